"""Stage ``infer``: every condition of one subject through the experiment's method.

The stage reads the condition inputs with the one reader (``itermask.io.samples``), loads
the trained networks, hands both to the method (``itermask.methods``), and writes what the
method returns (``itermask.inference.outputs``) into ``out_dir/<condition>/``, atomically
(a temporary folder renamed at the end). Noise seeds come from ``itermask.io.seeds`` with
the keys (dataset, subject, condition[, slice]), never from output paths.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

from itermask import methods
from itermask.config.settings import ExperimentSettings
from itermask.errors import InputError
from itermask.inference.model import load_trained
from itermask.inference.outputs import write_condition
from itermask.io.atomic import atomic_dir
from itermask.io.device import resolve_device
from itermask.io.samples import read_item
from itermask.io.seeds import keyed_seed
from itermask.methods.base import InferenceContext


def condition_seed(seed: int, dataset: str, subject: str, condition: str, *more: object) -> int:
    """Noise seed of one condition (and slice): a function of the config seed and these keys."""
    return keyed_seed(seed, "infer", dataset, subject, condition, *more)


def infer_subject(
    model_path: str,
    conditions: Mapping[str, Mapping[str, Any]],
    settings: ExperimentSettings,
    out_dir: str,
    *,
    dataset: str,
    subject: str,
    device: str,
    field_of_view_mm: float,
    log: Callable[[str], Any],
) -> None:
    """Run inference for every condition of one subject; write ``out_dir/<condition>/``.

    ``conditions``: condition name -> input item (``{"image", "hf", "brain", "label"}`` or
    ``{"slices"}``), as the method's ``condition_inputs`` declared them; ``field_of_view_mm``:
    the 2D field of view (config ``preprocess.slices2d``) of a 2D model run on volumes.
    """
    t_start = time.perf_counter()
    dev = resolve_device(device)
    method = methods.get(settings.method)
    networks, meta = load_trained(model_path, dev)
    if meta.get("method") != settings.method:
        raise InputError(f"experiment method '{settings.method}' but the model is a '{meta.get('method')}' model",
                         path=model_path)
    if meta.get("hf_radius") is not None and int(meta["hf_radius"]) != settings.hf_radius:
        raise InputError(f"experiment HF radius {settings.hf_radius}, but the model was trained with HF radius "
                         f"{int(meta['hf_radius'])}", path=model_path)
    log(f"[infer] {settings.method}/{settings.variant} on {len(conditions)} condition(s) of "
        f"{dataset}/sub-{subject}, device {dev}")
    inputs = {name: read_item(item, dataset=dataset, subject=subject) for name, item in conditions.items()}
    ctx = InferenceContext(
        settings=settings, meta=meta, device=dev, model_path=str(model_path), log=log,
        field_of_view_mm=field_of_view_mm,
        seed=lambda condition, *more: condition_seed(settings.seed, dataset, subject, condition, *more),
    )
    outputs = method.infer(networks, inputs, ctx)
    common = {"method": settings.method, "variant": settings.variant, "model": str(model_path), "device": str(dev),
              "base_seed": settings.seed, "dataset": dataset, "subject": subject, "hf_radius": meta.get("hf_radius")}
    with atomic_dir(out_dir) as tmp:
        for name, out in outputs.items():
            write_condition(Path(tmp) / name, out, {**common, "condition": name})
    log(f"[infer] {dataset}/sub-{subject} done in {time.perf_counter() - t_start:.1f} s")
