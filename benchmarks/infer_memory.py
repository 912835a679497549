"""Peak memory of IterMask3D inference on CPU at the papers' size (issue 13, item 5).

Each case runs in its own child process (so each peak is its own): the reference 3D UNet
(16-32-64-128-256, random weights) on ``--size``^3 random volumes with a ball "brain",
``run_itermask3d`` with a coarse phase A (``--step`` percent per iteration) and one phase-B
iteration, for one subject and for a lockstep batch of several. Phase A keeps only its
threshold curve (one float per iteration), never the masks, so the number of phase-A
iterations does not change the peak: the coarse step only keeps the run short. Prints, per
case, the child's total peak RSS, its baseline (the peak after importing torch and the package
and building the network, before any input exists: ~0.5 GiB that does not grow with the
subjects), the increment per subject ((total - baseline) / subjects) and the seconds; asserts
nothing. ``--precision`` is the config's ``precision``: ``auto`` (the default, as the pipeline:
bf16 forward passes on CPUs with bf16 in hardware) or ``fp32``.

Environment: ``THREADS`` (default 2) sets the child's ``torch.set_num_threads``.

    .venv/bin/python benchmarks/infer_memory.py                 # 192^3: 1 subject, then 4 in lockstep
    .venv/bin/python benchmarks/infer_memory.py --size 48 --subjects 1 2
    .venv/bin/python benchmarks/infer_memory.py --precision fp32
    THREADS=8 .venv/bin/python benchmarks/infer_memory.py
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(size: int, subjects: int, step: float, amp: bool) -> None:
    """One case, in this process: prints a JSON line with the case's seconds and baseline peak (GiB)."""
    import resource

    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT))
    from bench_itermask import PHASE_B, build_model, make_subjects
    from itermask.core.iterative_mask_3d import phase_a_percents, run_itermask3d

    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    model = build_model([16, 32, 64, 128, 256], torch.device("cpu")).eval()
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB, before any input
    subs = make_subjects(subjects, size)
    t0 = time.perf_counter()
    run_itermask3d(model, [s[0] for s in subs], [s[1] for s in subs], [s[2] for s in subs],
                   list(range(subjects)), percents=phase_a_percents(step, fine_from=None),
                   choose_tau=lambda curve: (float(curve[-2]), None), variant="full", tol=-1.0, max_iterations=1,
                   batch_size=subjects, device="cpu", amp=amp, **PHASE_B)
    print(json.dumps({"seconds": time.perf_counter() - t0, "baseline_gib": baseline}))


def measure(size: int, subjects: int, step: float, precision: str) -> tuple[float, float, float]:
    """(peak RSS GiB, baseline peak GiB, seconds) of one case run in a child process."""
    cmd = [sys.executable, __file__, "--child", "--size", str(size), "--subjects", str(subjects),
           "--step", str(step), "--precision", precision]
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (ru_maxrss in KiB)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"case size {size}, {subjects} subject(s) failed")
        out.seek(0)
        result = json.loads(out.read().strip().splitlines()[-1])
    return usage.ru_maxrss / 2**20, result["baseline_gib"], result["seconds"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="environment: THREADS=<n> torch threads of each case (default 2)")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--subjects", type=int, nargs="+", default=[1, 4], help="lockstep batch sizes")
    ap.add_argument("--step", type=float, default=50.0, help="phase-A percent per iteration (divides 100)")
    ap.add_argument("--precision", choices=["auto", "fp32"], default="auto", help="config precision (default auto)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    amp = args.precision != "fp32"  # as the pipeline reads the config (itermask.io.workflow.amp_of)
    if args.child:
        child(args.size, args.subjects[0], args.step, amp)
        return
    sys.path.insert(0, str(ROOT))
    from itermask.io.device import precision_label

    print(f"forward passes: {precision_label('cpu', amp)} (precision {args.precision})")
    print("GiB/subject = (total peak - baseline) / subjects; baseline = peak after imports and the network")
    print(f"{'size':>6}{'subjects':>10}{'total peak GiB':>16}{'baseline GiB':>14}{'GiB/subject':>13}{'seconds':>9}")
    for n in args.subjects:
        peak, baseline, seconds = measure(args.size, n, args.step, args.precision)
        print(f"{args.size:>6}{n:>10}{peak:>16.2f}{baseline:>14.2f}{(peak - baseline) / n:>13.2f}{seconds:>9.1f}",
              flush=True)


if __name__ == "__main__":
    main()
