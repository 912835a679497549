"""Stage ``infer``: every condition of one or more subjects through the experiment's method.

The stage reads the condition inputs with the one reader (``itermask.io.samples``), loads
the trained networks once, hands all inputs to the method (``itermask.methods``) in one call,
so a method that batches (IterMask3D, IterMask2) advances several subjects' conditions in
lockstep, and writes what the method returns (``itermask.inference.outputs``) into
``<run folder>/<condition>/``, one folder per subject, each atomically (a temporary folder
renamed at the end). Noise seeds come from ``itermask.io.seeds`` with the keys (dataset,
subject, condition[, slice]), never from output paths or from which subjects share a job, so
a subject's result is the same whether it runs alone (clusters) or with others (local runs,
config ``resources.infer_subjects_per_job``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from itermask import methods
from itermask.config.settings import ExperimentSettings
from itermask.errors import InputError
from itermask.inference.model import load_trained
from itermask.inference.outputs import write_condition
from itermask.io.atomic import atomic_dir
from itermask.io.device import precision_label, resolve_device
from itermask.io.samples import read_item
from itermask.io.seeds import keyed_seed
from itermask.methods.base import InferenceContext


@dataclass(frozen=True)
class Run:
    """One subject of an inference job: its conditions' input items and its output folder."""

    dataset: str
    subject: str
    conditions: Mapping[str, Mapping[str, Any]]
    out_dir: str


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
    amp: bool,
    channels_last: bool,
    field_of_view_mm: float,
    log: Callable[[str], Any],
) -> None:
    """Run inference for every condition of one subject; write ``out_dir/<condition>/``.

    ``conditions``: condition name -> input item (``{"image", "hf", "brain", "label"}`` or
    ``{"slices"}``), as the method's ``condition_inputs`` declared them; ``field_of_view_mm``:
    the 2D field of view (config ``preprocess.slices2d``) of a 2D model run on volumes;
    ``channels_last``: config ``resources.channels_last`` (3D networks' layout, ``load_trained``).
    """
    infer_runs(model_path, [Run(dataset, subject, conditions, out_dir)], settings, device=device, amp=amp,
               channels_last=channels_last, field_of_view_mm=field_of_view_mm, log=log)


def infer_runs(
    model_path: str,
    runs: Sequence[Run],
    settings: ExperimentSettings,
    *,
    device: str,
    amp: bool,
    channels_last: bool,
    field_of_view_mm: float,
    log: Callable[[str], Any],
) -> None:
    """``infer_subject`` for several subjects in one call (one model load, one method call):
    the method sees the conditions of all runs, keyed ``<subject index>/<condition>``."""
    t_start = time.perf_counter()
    dev = resolve_device(device)
    method = methods.get(settings.method)
    networks, meta = load_trained(model_path, dev, channels_last=channels_last)
    _check_model(meta, settings, model_path)
    keys: dict[str, tuple[Run, str]] = {}
    for i, run in enumerate(runs):
        for cond in run.conditions:
            keys[cond if len(runs) == 1 else f"{i}/{cond}"] = (run, cond)
    log(f"[infer] {settings.method}/{settings.variant} on {len(keys)} condition(s) of "
        + ", ".join(f"{r.dataset}/sub-{r.subject}" for r in runs) + f", device {dev}")
    inputs = {k: read_item(run.conditions[c], dataset=run.dataset, subject=run.subject) for k, (run, c) in keys.items()}

    def seed(key: str, *more: object) -> int:
        run, cond = keys[key]
        return condition_seed(settings.seed, run.dataset, run.subject, cond, *more)

    ctx = InferenceContext(settings=settings, meta=meta, device=dev, amp=amp, model_path=str(model_path), log=log,
                           field_of_view_mm=field_of_view_mm, seed=seed, condition=lambda key: keys[key][1])
    outputs = method.infer(networks, inputs, ctx)
    for run in runs:
        common = {"method": settings.method, "variant": settings.variant, "model": str(model_path),
                  "device": str(dev), "amp": amp, "precision": precision_label(dev.type, amp),
                  "channels_last": channels_last,
                  "base_seed": settings.seed, "dataset": run.dataset, "subject": run.subject,
                  "hf_radius": meta.get("hf_radius")}
        with atomic_dir(run.out_dir) as tmp:
            for key, out in outputs.items():
                if keys[key][0] is run:
                    write_condition(Path(tmp) / keys[key][1], out, {**common, "condition": keys[key][1]})
    log(f"[infer] {len(runs)} subject(s) done in {time.perf_counter() - t_start:.1f} s")


def _check_model(meta: Mapping[str, Any], settings: ExperimentSettings, model_path: str) -> None:
    trained = str(meta.get("method"))
    if trained not in methods.names() or not methods.get(settings.method).shares_models_with(methods.get(trained)):
        raise InputError(f"experiment method '{settings.method}' but the model is a '{meta.get('method')}' model",
                         path=model_path)
    if meta.get("hf_radius") is not None and int(meta["hf_radius"]) != settings.hf_radius:
        raise InputError(f"experiment HF radius {settings.hf_radius}, but the model was trained with HF radius "
                         f"{int(meta['hf_radius'])}", path=model_path)
