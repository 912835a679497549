"""Resampling (antspyx) and crop/pad to a box centred on the brain (METHOD.md §1.3-1.4).

NIfTI affines map voxel indices to RAS+ world coordinates; ITK/ANTs images live in LPS+
physical space. The conversion flips the sign of the first two world axes:
``LPS = diag(-1, -1, 1) @ RAS``. ANTs arrays use the same (i, j, k) index order as nibabel.
"""
from __future__ import annotations

from typing import Sequence

import ants
import nibabel as nib
import numpy as np

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
_INTERP_RESAMPLE = {"linear": 0, "nearest": 1}
_INTERP_TARGET = {"linear": "linear", "nearest": "nearestNeighbor"}


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in _INTERP_RESAMPLE:
        raise ValueError(f"interpolation must be 'linear' or 'nearest', got '{interpolation}'")


def affine_to_ants_geometry(affine: np.ndarray) -> tuple[tuple, tuple, np.ndarray]:
    """(origin, spacing, direction) in LPS for a NIfTI (RAS) voxel-to-world affine."""
    affine = np.asarray(affine, dtype=np.float64)
    lin = _RAS_TO_LPS @ affine[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    direction = lin / spacing
    origin = _RAS_TO_LPS @ affine[:3, 3]
    return tuple(float(v) for v in origin), tuple(float(v) for v in spacing), direction


def ants_geometry_to_affine(origin: Sequence[float], spacing: Sequence[float], direction: np.ndarray) -> np.ndarray:
    """NIfTI (RAS) affine for an ANTs image geometry given in LPS."""
    affine = np.eye(4)
    affine[:3, :3] = _RAS_TO_LPS @ np.asarray(direction, dtype=np.float64) @ np.diag(np.asarray(spacing, float))
    affine[:3, 3] = _RAS_TO_LPS @ np.asarray(origin, dtype=np.float64)
    return affine


def array_to_ants(data: np.ndarray, affine: np.ndarray) -> "ants.ANTsImage":
    """ANTs float32 image of a 3D array with a NIfTI affine."""
    origin, spacing, direction = affine_to_ants_geometry(affine)
    arr = np.ascontiguousarray(np.asarray(data, dtype=np.float32))
    return ants.from_numpy(arr, origin=origin, spacing=spacing, direction=direction)


def nib_to_ants(img: nib.Nifti1Image) -> "ants.ANTsImage":
    """ANTs float32 image with the same world geometry as a nibabel image."""
    return array_to_ants(np.asanyarray(img.dataobj), img.affine)


def ants_to_nib(img: "ants.ANTsImage", dtype: type | None = None) -> nib.Nifti1Image:
    """nibabel image (RAS affine) of an ANTs image."""
    affine = ants_geometry_to_affine(img.origin, img.spacing, img.direction)
    data = img.numpy()
    if dtype is not None:
        data = data.astype(dtype)
    return nib.Nifti1Image(data, affine)


def resample_to_spacing(
    img: nib.Nifti1Image, spacing_mm: float | Sequence[float], interpolation: str
) -> nib.Nifti1Image:
    """Resample to a voxel spacing (mm; a number means isotropic) keeping orientation and origin.

    ``interpolation``: "linear" (images) or "nearest" (masks/labels). The output keeps the
    input's data type for "nearest" and is float32 for "linear".
    """
    _check_interpolation(interpolation)
    spacing = (float(spacing_mm),) * 3 if np.isscalar(spacing_mm) else tuple(float(s) for s in spacing_mm)
    src = np.asanyarray(img.dataobj)
    out = ants.resample_image(
        nib_to_ants(img), spacing, use_voxels=False, interp_type=_INTERP_RESAMPLE[interpolation]
    )
    dtype = src.dtype if interpolation == "nearest" else np.float32
    return ants_to_nib(out, dtype=dtype)


def resample_to_grid(
    img: nib.Nifti1Image, ref_shape: Sequence[int], ref_affine: np.ndarray, interpolation: str
) -> np.ndarray:
    """Resample an image onto a target grid (shape, affine) by world coordinates.

    Points of the grid outside the source image get 0. Returns float32 for "linear" and the
    source dtype for "nearest".
    """
    _check_interpolation(interpolation)
    src = np.asanyarray(img.dataobj)
    target = array_to_ants(np.zeros(tuple(int(s) for s in ref_shape), dtype=np.float32), ref_affine)
    out = ants.resample_image_to_target(nib_to_ants(img), target, interp_type=_INTERP_TARGET[interpolation])
    data = out.numpy()
    return data.astype(src.dtype) if interpolation == "nearest" else data.astype(np.float32)


def bbox_centre(mask: np.ndarray) -> np.ndarray:
    """Centre (index units, float) of the bounding box of the True voxels of a mask."""
    idx = np.argwhere(np.asarray(mask))
    if idx.size == 0:
        raise ValueError("cannot centre a box on an empty mask")
    return (idx.min(axis=0) + idx.max(axis=0)) / 2.0


def box_slices(
    shape: Sequence[int], box: Sequence[int], centre: Sequence[float]
) -> tuple[np.ndarray, tuple[slice, ...], tuple[slice, ...]]:
    """Index logic of a box of size ``box`` centred on ``centre`` in an array of ``shape``.

    Returns ``start`` (box voxel 0 in source indices; may be negative or run past the end),
    and the source / destination slices of the overlap. The box centre ``start + (box-1)/2``
    is the nearest achievable to ``centre`` (ties go to the higher start).
    """
    shape = np.asarray(shape, dtype=np.int64)
    box = np.asarray(box, dtype=np.int64)
    centre = np.asarray(centre, dtype=np.float64)
    if not (shape.size == box.size == centre.size):
        raise ValueError("shape, box and centre must have the same length")
    start = np.floor(centre - (box - 1) / 2.0 + 0.5).astype(np.int64)
    lo = np.clip(start, 0, shape)
    hi = np.clip(start + box, 0, shape)
    hi = np.maximum(hi, lo)
    src = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    dst = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start))
    return start, src, dst


def crop_or_pad_to_box(
    data: np.ndarray,
    affine: np.ndarray,
    box: Sequence[int],
    centre_mask: np.ndarray,
    fill: float = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop/pad ``data`` to ``box`` centred on the bounding box of ``centre_mask``.

    Padding uses ``fill``. The returned affine is translated so every voxel keeps its world
    coordinate: output voxel j is source voxel ``j + start``.
    """
    data = np.asarray(data)
    if np.asarray(centre_mask).shape != data.shape:
        raise ValueError(f"centre mask shape {np.shape(centre_mask)} differs from data shape {data.shape}")
    start, src, dst = box_slices(data.shape, box, bbox_centre(centre_mask))
    out = np.full(tuple(int(b) for b in box), fill, dtype=data.dtype)
    out[dst] = data[src]
    new_affine = np.array(affine, dtype=np.float64, copy=True)
    new_affine[:3, 3] = affine[:3, :3] @ start.astype(np.float64) + affine[:3, 3]
    return out, new_affine
