"""Human in the loop: re-run the final stage of one inference condition at a chosen tau.

``itermask rethreshold`` (``itermask.cli``). Inputs are found through the paths in the
condition's ``result.json``; the method re-runs its final stage (IterMask3D: phase B from the
whole brain with the original noise seed and stop rule, so the original tau gives back the
original mask; IterMask2: the 2D procedure with ``tau`` in place of the calibration tau).
Writes ``mask_tau-<tau>.nii.gz`` and a ``.json`` beside the original mask (not touched).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from itermask import methods
from itermask.errors import InputError
from itermask.inference.model import load_trained
from itermask.inference.outputs import finite
from itermask.io.atomic import write_json
from itermask.io.device import resolve_device
from itermask.io.nifti import save_nifti
from itermask.methods.base import InferenceContext


def rethreshold(model_path: str, condition_dir: str, tau: float, *, device: str,
                out_name: str | None = None) -> Path:
    """Re-run one condition's final stage at ``tau``; returns the new mask's path."""
    import numpy as np

    folder = Path(condition_dir)
    res_path = folder / "result.json"
    if not res_path.exists():
        raise InputError("no result.json: not an inference condition folder", path=folder)
    prev = json.loads(res_path.read_text())
    for p in (prev.get("inputs") or {}).values():
        if p and not Path(p).exists():
            raise InputError("input of the original run not found (run from the pipeline's working directory, "
                             "where the relative paths of result.json resolve)", path=p)
    dev = resolve_device(device)
    networks, meta = load_trained(model_path, dev)
    method = methods.get(meta["method"])
    ctx = InferenceContext(settings=None, meta=meta, device=dev, seed=lambda *k: 0, model_path=str(model_path),
                           log=print, field_of_view_mm=prev.get("field_of_view_mm"), condition=lambda key: key)
    tau = float(tau)
    name = out_name or f"mask_tau-{tau:g}.nii.gz"
    if not name.endswith(".nii.gz"):
        name += ".nii.gz"
    t0 = time.perf_counter()
    out, info = method.rethreshold(networks, prev, tau, ctx)
    out_path = folder / name
    save_nifti(out.arrays["mask"], out.affine, out_path, dtype=np.uint8)
    record = {"tau": tau, "original_tau": prev.get("tau"), "kind": prev.get("kind"), "model": str(model_path),
              "device": str(dev), "mask": name, **info, **out.record}
    write_json(folder / (name[: -len(".nii.gz")] + ".json"), finite(record))
    print(f"{out_path}: tau {tau:g}, {time.perf_counter() - t0:.1f} s")
    return out_path
