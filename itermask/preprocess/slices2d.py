"""Rule slices2d: axial 2D slices for slice-input methods (IterMask2; METHOD.md §1.7).

Arrays are RAS: the last axis is inferior→superior, so axial slice k is ``volume[:, :, k]``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from itermask.core.highfreq import high_frequency_torch
from itermask.errors import InputError
from itermask.io.atomic import atomic_path
from itermask.preprocess.grid import check_same_shape, load_grid_array


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


def extract_slices2d(
    image_path: str | Path,
    brainmask_path: str | Path,
    out_npz: str | Path,
    *,
    label_path: str | Path | None,
    role: str,
    size: int,
    train_range_fraction: Sequence[float],
    hf_radius: int,
    dataset: str,
    subject: str,
) -> None:
    """Axial 2D slices (scaled bg=-3 / p90=+3, area-resized to size², HF per slice) as npz.

    ``role``: "train" (central range, brain, no lesion), "test" (largest-lesion slice; needs a
    non-empty label) or "all" (every slice with brain).
    """
    import torch

    ctx = dict(dataset=dataset, subject=subject)
    if role not in ("train", "test", "all"):
        raise ValueError(f"role must be 'train', 'test' or 'all', got '{role}'")
    x, _ = load_grid_array(image_path, "normalised image", dataset, subject)
    brain = load_grid_array(brainmask_path, "brain mask", dataset, subject)[0] > 0
    check_same_shape(x, brain, image_path, dataset, subject)
    label = None
    if label_path is not None:
        if not Path(label_path).exists():
            raise InputError("label file missing", path=label_path, **ctx)
        label = load_grid_array(label_path, "label", dataset, subject)[0] > 0
        check_same_shape(label, brain, label_path, dataset, subject)
    if role == "test":
        if label is None:
            raise InputError("role 'test' needs a label file", path=image_path, **ctx)
        if not label.any():
            raise InputError("label is empty: no lesion slice for the test role", path=label_path, **ctx)
        index = np.array([select_test_slice(label)], dtype=np.int64)
    elif role == "train":
        index = select_train_slices(label, brain, train_range_fraction)
    else:
        index = brain_slices(brain)
    if index.size == 0:
        raise InputError(f"no axial slice qualifies for role '{role}'", path=image_path, **ctx)
    try:
        scaled = scale_for_2d(x, brain)
    except ValueError as exc:
        raise InputError(f"cannot scale for 2D: {exc}", path=image_path, **ctx) from exc
    image = resize_slices(take_axial(scaled, index), size)
    brain2d = resize_slices(take_axial(brain, index), size)
    label2d = (resize_slices(take_axial(label, index), size) if label is not None
               else np.zeros_like(brain2d))
    with torch.no_grad():
        hf = high_frequency_torch(torch.from_numpy(image)[:, None], radius=hf_radius, ndim=2)[:, 0].numpy()
    with atomic_path(out_npz) as tmp:
        np.savez_compressed(
            tmp, image=image.astype(np.float32), hf=hf.astype(np.float32), brain=brain2d,
            label=label2d, index=index, role=np.array(role),
        )
