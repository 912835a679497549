"""The artefacts that TorchIO draws (METHOD.md §2): spike, ghosting, bias field, motion.

Spike and Ghosting are deterministic; RandomBiasField/RandomMotion are sampled under
``torch.manual_seed(torch_seed)`` (the global torch RNG state is restored afterwards) and the
sampled parameters are read back from TorchIO's transform history into the record.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torchio as tio

from itermask.artefacts.algorithms import check_volume


def _tio_subject(volume: np.ndarray, affine: np.ndarray | None) -> tio.Subject:
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None]
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    return tio.Subject(image=tio.ScalarImage(tensor=tensor, affine=aff))


def _plain(value: Any) -> Any:
    """Make TorchIO history arguments JSON-friendly."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return np.asarray(value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _run_torchio(
    transform: tio.Transform, volume: np.ndarray, affine: np.ndarray | None, torch_seed: int | None
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Apply a TorchIO transform (seeded, global RNG restored); return array and history."""
    subject = _tio_subject(volume, affine)
    with torch.random.fork_rng(devices=[]):
        if torch_seed is not None:
            torch.manual_seed(int(torch_seed))
        out = transform(subject)
    history = [
        {"transform": name, "arguments": _plain({k: v for k, v in args.items() if k not in ("include", "exclude", "copy")})}
        for name, args in out.applied_transforms
    ]
    return out["image"].data[0].numpy().astype(np.float32), history


def spike(
    volume: np.ndarray, positions: list[list[float]], intensity: float, affine: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """TorchIO ``Spike`` (deterministic)."""
    t = tio.Spike(spikes_positions=np.asarray(positions, dtype=np.float64), intensity=float(intensity))
    out, history = _run_torchio(t, volume, affine, None)
    return out, {"torchio_history": history}


def ghosting(
    volume: np.ndarray, num_ghosts: int, axis: int, intensity: float, restore: float | None,
    affine: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """TorchIO ``Ghosting`` (deterministic); ``axis`` is a spatial axis 0..2 of the volume."""
    t = tio.Ghosting(num_ghosts=int(num_ghosts), axis=int(axis), intensity=float(intensity), restore=restore)
    out, history = _run_torchio(t, volume, affine, None)
    return out, {"torchio_history": history}


def _coefficient_range(coefficients: float | list[float]) -> tuple[float, float]:
    if np.ndim(coefficients) == 0:
        c = float(coefficients)
        return (c, c)
    lo, hi = (float(v) for v in coefficients)
    return (lo, hi)


def bias_field(
    volume: np.ndarray, coefficients: float | list[float], order: int, torch_seed: int,
    affine: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """TorchIO ``RandomBiasField(coefficients=(c, c) or (a, b), order)`` applied to
    ``x - min(x)`` and shifted back by ``min(x)``."""
    x = check_volume(volume)
    shift = float(x.min())
    t = tio.RandomBiasField(coefficients=_coefficient_range(coefficients), order=int(order))
    out, history = _run_torchio(t, x - shift, affine, torch_seed)
    return (out + shift).astype(np.float32), {"torchio_history": history, "shift": shift}


def motion(
    volume: np.ndarray, degrees: float, translation: float, num_transforms: int, torch_seed: int,
    affine: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """TorchIO ``RandomMotion`` (an extra artefact type; translation in mm via the affine)."""
    t = tio.RandomMotion(degrees=float(degrees), translation=float(translation), num_transforms=int(num_transforms))
    out, history = _run_torchio(t, volume, affine, torch_seed)
    return out, {"torchio_history": history}
