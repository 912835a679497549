"""Command-line entry point ``itermask`` (``python -m itermask.cli``).

Sub-commands:
- ``rethreshold``: human in the loop: re-run the final IterMask stage of one inference
  condition at a chosen tau, without retraining; writes ``mask_tau-<tau>.nii.gz`` beside the
  original mask.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Sequence

from itermask.config.schema import load_schema
from itermask.errors import ItermaskError


def schema_default(key: str) -> object:
    """The default of a top-level config setting (the schema holds every default)."""
    return load_schema()["properties"][key]["default"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="itermask", description="IterMask2 / IterMask3D utilities")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("rethreshold", help="re-run the final stage of one condition at a chosen tau")
    r.add_argument("--model", required=True, help="model.pt of the experiment")
    r.add_argument("--condition-dir", required=True,
                   help="an inference condition folder (holds result.json), e.g. results/inference/EXP/DS/sub-X/lesion")
    r.add_argument("--tau", required=True, type=float, help="error threshold tau")
    r.add_argument("--device", default=schema_default("device"),
                   help="auto | cpu | cuda[:N] (default: the schema's default device, %(default)s)")
    r.add_argument("--out-name", default=None,
                   help="output file name, starting with mask_ (default mask_tau-<tau>.nii.gz)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default sys.argv[1:]), run the sub-command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "rethreshold":
        from itermask.inference.rethreshold import rethreshold

        if not (math.isfinite(args.tau) and args.tau >= 0):
            print("error: --tau must be a finite, non-negative number", file=sys.stderr)
            return 2
        try:
            out = rethreshold(args.model, args.condition_dir, args.tau, device=args.device, out_name=args.out_name,
                              log=lambda message: print(message, file=sys.stderr))
        except (ItermaskError, OSError) as exc:  # OSError: e.g. a folder it cannot write to
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(out)  # stdout: the new mask's path only
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
