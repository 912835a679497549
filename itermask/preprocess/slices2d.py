"""Axial 2D slices for slice-input methods (IterMask2; METHOD.md §1.7): a stage of the subject's
preprocessing job at ``preprocess.slices2d.hf_radius``, rule slices2d at any other radius.

Arrays are RAS: the last axis is inferior→superior, so axial slice k is ``volume[:, :, k]``.

Geometry: each axial slice is cropped or padded (background), centred on the box, to a square
field of view of ``field_of_view_mm`` (the reference: BraTS's 240 mm field) and area-resized
to ``size`` px, so a pixel is ``field_of_view_mm / size`` mm (1.875 mm for 240 mm at 128 px).
The slices file stores that geometry (``pixel_mm``, ``field_of_view_mm``) and the affine of
the (H, W, n) stack (real in-plane spacing and position; the third axis stacks the selected
slices, whose axial indices are ``index``), so 2D outputs and their metrics are in mm.

Test slice (role ``test``): per subject the largest-lesion slice *within the central axial
range used for training* (``train_range_fraction``; the reference's 70-89 of 155); a subject
with no lesion there is left out: its file holds no slice and a ``left_out_reason``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

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
    """Resize (n, H, W) slices to (n, size, size) by area averaging: torch's ``area`` mode, as the
    reference's MONAI ``Resized`` (adaptive average pooling: output pixel i averages input pixels
    floor(i·H/size) to ceil((i+1)·H/size) - 1 with equal weights).

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


def select_test_slice(label: np.ndarray, range_fraction: Sequence[float]) -> int | None:
    """Axial index with the largest lesion area within the central range (the lowest such
    index on ties); None when no slice of the range holds lesion."""
    idx = np.array(axial_range(label.shape[2], range_fraction), dtype=np.int64)
    area = np.asarray(label, dtype=bool)[:, :, idx].sum(axis=(0, 1))
    return int(idx[np.argmax(area)]) if area.any() else None


def field_pixels(field_of_view_mm: float, spacing_mm: float) -> int:
    """Side of the square field of view in voxels of the volume."""
    n = int(round(float(field_of_view_mm) / float(spacing_mm)))
    if n < 1:
        raise ValueError(f"field of view {field_of_view_mm} mm is below one voxel of {spacing_mm} mm")
    return n


def _window(n: int, m: int) -> tuple[int, int, int]:
    """Centred crop/pad of length n to length m: (source start, source stop, destination start)."""
    start = (n - m) // 2  # < 0: padding
    src0, src1 = max(start, 0), min(start + m, n)
    return src0, src1, src0 - start


def to_field(slices: np.ndarray, fov_px: int, fill: float | bool) -> np.ndarray:
    """(n, H, W) -> (n, fov_px, fov_px): the centred field of view, ``fill`` where padded."""
    arr = np.asarray(slices)
    out = np.full((arr.shape[0], fov_px, fov_px), fill, dtype=arr.dtype)
    (a0, a1, d0), (b0, b1, e0) = (_window(n, fov_px) for n in arr.shape[1:])
    out[:, d0:d0 + a1 - a0, e0:e0 + b1 - b0] = arr[:, a0:a1, b0:b1]
    return out


def from_field(field: np.ndarray, shape_hw: Sequence[int], fill: float | bool) -> np.ndarray:
    """Inverse of `to_field`: (n, F, F) back onto (n, H, W), ``fill`` outside the field."""
    arr = np.asarray(field)
    out = np.full((arr.shape[0], *shape_hw), fill, dtype=arr.dtype)
    (a0, a1, d0), (b0, b1, e0) = (_window(n, arr.shape[1]) for n in shape_hw)
    out[:, a0:a1, b0:b1] = arr[:, d0:d0 + a1 - a0, e0:e0 + b1 - b0]
    return out


def slice_affine(affine: np.ndarray, shape_hw: Sequence[int], fov_px: int, size: int) -> np.ndarray:
    """Affine of the (size, size, n) stack: pixel centres of the area-resized field in world mm."""
    f = fov_px / size
    out = np.array(affine, dtype=np.float64)
    origin = [_window(n, fov_px)[0] - _window(n, fov_px)[2] + 0.5 * f - 0.5 for n in shape_hw]
    out[:3, 3] = affine[:3, :3] @ np.array([origin[0], origin[1], 0.0]) + affine[:3, 3]
    out[:3, :2] = affine[:3, :2] * f
    return out


def brain_slices(brain: np.ndarray) -> np.ndarray:
    """Every axial index whose slice contains brain."""
    return np.flatnonzero(np.asarray(brain, dtype=bool).any(axis=(0, 1)))


def take_axial(volume: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Stack axial slices ``volume[:, :, k]`` for k in ``index`` as (n, H, W)."""
    return np.moveaxis(np.asarray(volume)[:, :, np.asarray(index, dtype=np.int64)], 2, 0)


def _select(role: str, label: np.ndarray | None, brain: np.ndarray, range_fraction: Sequence[float],
            paths: tuple, ctx: dict) -> tuple[np.ndarray, str | None]:
    """(axial indices, left-out reason or None) of a role."""
    image_path, label_path = paths
    if role == "test":
        if label is None:
            raise InputError("role 'test' needs a label file", path=image_path, **ctx)
        if not label.any():
            raise InputError("label is empty: no lesion slice for the test role", path=label_path, **ctx)
        k = select_test_slice(label, range_fraction)
        if k is None:
            r = axial_range(label.shape[2], range_fraction)
            return np.zeros(0, np.int64), (f"no lesion in the central axial range {r.start}-{r.stop - 1} "
                                           f"of {label.shape[2]} slices used for training")
        return np.array([k], dtype=np.int64), None
    index = select_train_slices(label, brain, range_fraction) if role == "train" else brain_slices(brain)
    if index.size == 0:
        raise InputError(f"no axial slice qualifies for role '{role}'", path=image_path, **ctx)
    return index, None


def _load(image_path: str | Path, brainmask_path: str | Path, label_path: str | Path | None, dataset: str,
          subject: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(image, affine, brain, label or None) on one grid."""
    x, affine = load_grid_array(image_path, "normalised image", dataset, subject)
    brain = load_grid_array(brainmask_path, "brain mask", dataset, subject)[0] > 0
    check_same_shape(x, brain, image_path, dataset, subject)
    label = None
    if label_path is not None:
        if not Path(label_path).exists():
            raise InputError("label file missing", path=label_path, dataset=dataset, subject=subject)
        label = load_grid_array(label_path, "label", dataset, subject)[0] > 0
        check_same_shape(label, brain, label_path, dataset, subject)
    return x, affine, brain, label


def extract_slices2d(
    image_path: str | Path,
    brainmask_path: str | Path,
    out_npz: str | Path,
    *,
    label_path: str | Path | None,
    role: str,
    size: int,
    field_of_view_mm: float,
    train_range_fraction: Sequence[float],
    hf_radius: int,
    dataset: str,
    subject: str,
    log: Callable[[str], Any],
) -> None:
    """Axial 2D slices (scaled bg=-3 / p90=+3, field of view area-resized to size², HF per
    slice) as npz, with their geometry (module docstring).

    ``role``: "train" (central range, brain, no lesion), "test" (largest-lesion slice of the
    central range; needs a non-empty label; none there: the subject is left out, logged and
    recorded as ``left_out_reason``) or "all" (every slice with brain).
    """
    import torch

    ctx = dict(dataset=dataset, subject=subject)
    if role not in ("train", "test", "all"):
        raise ValueError(f"role must be 'train', 'test' or 'all', got '{role}'")
    x, affine, brain, label = _load(image_path, brainmask_path, label_path, dataset, subject)
    index, left_out = _select(role, label, brain, train_range_fraction, (image_path, label_path), ctx)
    if left_out:
        log(f"[slices2d] {dataset}/sub-{subject}: left out of the 2D test set: {left_out}")
    try:
        scaled = scale_for_2d(x, brain)
    except ValueError as exc:
        raise InputError(f"cannot scale for 2D: {exc}", path=image_path, **ctx) from exc
    spacing = float(np.linalg.norm(affine[:3, 0]))
    fov = field_pixels(field_of_view_mm, spacing)

    def field(vol: np.ndarray, fill: float | bool) -> np.ndarray:
        if not index.size:  # a left-out subject: no slice
            return np.zeros((0, size, size), bool if fill is False else np.float32)
        return resize_slices(to_field(take_axial(vol, index), fov, fill), size)

    image, brain2d = field(scaled, -3.0), field(brain, False)
    label2d = field(label, False) if label is not None else np.zeros_like(brain2d)
    hf = np.zeros_like(image)
    if index.size:
        with torch.no_grad():
            hf = high_frequency_torch(torch.from_numpy(image)[:, None], radius=hf_radius, ndim=2)[:, 0].numpy()
    extra = {"left_out_reason": np.array(left_out)} if left_out else {}
    with atomic_path(out_npz) as tmp:
        np.savez_compressed(
            tmp, image=image.astype(np.float32), hf=hf.astype(np.float32), brain=brain2d, label=label2d,
            index=index, role=np.array(role), pixel_mm=np.float64(field_of_view_mm / size),
            field_of_view_mm=np.float64(field_of_view_mm), affine=slice_affine(affine, x.shape[:2], fov, size),
            **extra,
        )
