"""Human in the loop: re-run the final stage of one inference condition at a chosen tau.

``itermask rethreshold`` (``itermask.cli``). Inputs are found through the paths in the
condition's ``result.json``; the method re-runs its final stage (IterMask3D: phase B from the
whole brain with the original noise seed and stop rule, so the original tau gives back the
original mask; IterMask2: the 2D procedure with ``tau`` in place of the calibration tau).
Writes ``mask_tau-<tau>.nii.gz`` and a ``.json`` beside the original mask (not touched: a chosen
``out_name`` must be a plain file name starting with ``mask_`` that is not one of the condition's
own outputs).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable

from itermask import methods
from itermask.core.networks.layout import in_layout, memory_format
from itermask.errors import InputError
from itermask.inference.model import load_trained
from itermask.inference.outputs import finite
from itermask.io.atomic import write_json
from itermask.io.device import resolve_device
from itermask.io.nifti import save_nifti
from itermask.methods.base import InferenceContext


#: the condition's own outputs (written by the inference stage): never a re-threshold's name
OWN_OUTPUTS = ("mask", "mask_oracle", "result", "error", "recon", "label", "brainmask", "input2d", "image")


def output_name(out_name: str | None, tau: float) -> str:
    """The new mask's file name (``mask_tau-<tau>.nii.gz`` by default); InputError for a name that
    is not a plain ``mask_*`` file name or that is one of the condition's own outputs."""
    name = out_name or f"mask_tau-{tau:.10g}.nii.gz"
    if not name.endswith(".nii.gz"):
        name += ".nii.gz"
    stem = name[: -len(".nii.gz")]
    if not re.fullmatch(r"mask_[A-Za-z0-9_.+-]+", stem) or stem in OWN_OUTPUTS:
        raise InputError(f"--out-name '{out_name}': give a plain file name starting with 'mask_' (no folders), "
                         f"not one of the condition's own files ({', '.join(f'{o}.*' for o in OWN_OUTPUTS)})")
    return name


def read_previous(folder: Path, model_meta: dict[str, Any], model_path: str) -> dict[str, Any]:
    """The condition's result.json, checked against the model (same method) and for its inputs."""
    res_path = folder / "result.json"
    if not res_path.exists():
        raise InputError("no result.json: not an inference condition folder", path=folder)
    try:
        prev = json.loads(res_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"result.json is not readable JSON ({exc})", path=res_path) from None
    if not isinstance(prev, dict):
        raise InputError("result.json does not hold an inference record", path=res_path)
    if prev.get("method") != model_meta.get("method"):  # the variant: the method's check_model_variant
        raise InputError(f"the model's method '{model_meta.get('method')}' ({model_path}) differs from the "
                         f"condition's '{prev.get('method')}': give the model of the experiment that wrote this folder",
                         path=res_path)
    if not isinstance(prev.get("amp"), bool):  # the run's precision, replayed (written since the inference stage records it)
        raise InputError("result.json does not record the run's precision ('amp': true or false); it was written "
                         "by an earlier version: rerun this condition's inference", path=res_path)
    for p in (prev.get("inputs") or {}).values():
        if p and not Path(p).exists():
            raise InputError("input of the original run not found (run from the pipeline's working directory, "
                             "where the relative paths of result.json resolve)", path=p)
    return prev


def rethreshold(model_path: str, condition_dir: str, tau: float, *, device: str,
                out_name: str | None = None, log: Callable[[str], Any] = print) -> Path:
    """Re-run one condition's final stage at ``tau``; returns the new mask's path."""
    import numpy as np

    folder = Path(condition_dir)
    if not (folder / "result.json").exists():
        raise InputError("no result.json: not an inference condition folder", path=folder)
    tau = float(tau)
    name = output_name(out_name, tau)
    dev = resolve_device(device)
    networks, meta = load_trained(model_path, dev, channels_last=False)
    prev = read_previous(folder, meta, model_path)
    layout = memory_format(bool(prev.get("channels_last")))  # the run's; runs before it was recorded ran contiguous
    networks = {k: in_layout(net, layout) for k, net in networks.items()}
    method = methods.get(meta["method"])
    ctx = InferenceContext(settings=None, meta=meta, device=dev, amp=prev["amp"],  # the run's
                           seed=lambda *k: 0, model_path=str(model_path), log=log,
                           field_of_view_mm=prev.get("field_of_view_mm"), condition=lambda key: key)
    t0 = time.perf_counter()
    out, info = method.rethreshold(networks, prev, tau, ctx)
    out_path = folder / name
    save_nifti(out.arrays["mask"], out.affine, out_path, dtype=np.uint8)
    record = {"tau": tau, "original_tau": prev.get("tau"), "kind": prev.get("kind"), "model": str(model_path),
              "device": str(dev), "mask": name, **info, **out.record}
    write_json(folder / (name[: -len(".nii.gz")] + ".json"), finite(record))
    log(f"{out_path}: tau {tau:.10g}, {time.perf_counter() - t0:.1f} s")
    return out_path
