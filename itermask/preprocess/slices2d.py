"""Axial 2D slices for IterMask2 (METHOD.md §1.7).

Arrays are RAS: the last axis is inferior→superior, so axial slice k is ``volume[:, :, k]``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def scale_for_2d(volume: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Linear per-volume scaling: background → -3, 90th percentile of brain intensities → +3.

    The background value is the median outside the brain (the constant set by normalisation);
    if the brain fills the whole volume, the volume minimum is used.
    """
    v = np.asarray(volume, dtype=np.float64)
    brain = np.asarray(brain, dtype=bool)
    if not brain.any():
        raise ValueError("empty brain mask")
    bg = float(np.median(v[~brain])) if (~brain).any() else float(v.min())
    p90 = float(np.percentile(v[brain], 90))
    if p90 <= bg:
        raise ValueError(f"90th brain percentile ({p90}) is not above the background ({bg})")
    return (-3.0 + 6.0 * (v - bg) / (p90 - bg)).astype(np.float32)


def resize_slices(slices: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Resize (n, H, W) slices to (n, size, size) by area averaging.

    Boolean input is treated as masks: area-averaged, then kept where the fraction is >= 0.5.
    """
    import torch
    import torch.nn.functional as F

    arr = np.asarray(slices)
    out_hw = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
    is_mask = arr.dtype == bool
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[:, None]
    if tuple(t.shape[-2:]) == out_hw:
        res = t
    else:
        res = F.interpolate(t, size=out_hw, mode="area")
    out = res[:, 0].numpy()
    return out >= 0.5 if is_mask else out.astype(np.float32)


def axial_range(n_slices: int, range_fraction: Sequence[float]) -> range:
    """Central axial index range ``round(f0*n) .. round(f1*n) - 1`` (ref: 70-89 of 155)."""
    f0, f1 = (float(f) for f in range_fraction)
    if not 0.0 <= f0 < f1 <= 1.0:
        raise ValueError(f"range_fraction must satisfy 0 <= f0 < f1 <= 1, got {range_fraction}")
    return range(int(round(f0 * n_slices)), int(round(f1 * n_slices)))


def select_train_slices(
    label: np.ndarray | None, brain: np.ndarray, range_fraction: Sequence[float]
) -> np.ndarray:
    """Axial indices in the central range whose slice contains brain and no lesion."""
    brain = np.asarray(brain, dtype=bool)
    has_brain = brain.any(axis=(0, 1))
    has_lesion = (
        np.zeros_like(has_brain) if label is None else np.asarray(label, dtype=bool).any(axis=(0, 1))
    )
    idx = np.array(axial_range(brain.shape[2], range_fraction), dtype=np.int64)
    return idx[has_brain[idx] & ~has_lesion[idx]]


def select_test_slice(label: np.ndarray) -> int:
    """Axial index with the largest lesion area (the lowest such index on ties)."""
    area = np.asarray(label, dtype=bool).sum(axis=(0, 1))
    if not area.any():
        raise ValueError("label is empty: no lesion slice to select")
    return int(np.argmax(area))


def brain_slices(brain: np.ndarray) -> np.ndarray:
    """Every axial index whose slice contains brain."""
    return np.flatnonzero(np.asarray(brain, dtype=bool).any(axis=(0, 1)))


def take_axial(volume: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Stack axial slices ``volume[:, :, k]`` for k in ``index`` as (n, H, W)."""
    return np.moveaxis(np.asarray(volume)[:, :, np.asarray(index, dtype=np.int64)], 2, 0)
