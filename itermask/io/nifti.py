"""NIfTI reading with validation, RAS reorientation, and atomic writing."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from itermask.io.atomic import atomic_path
from itermask.errors import InputError


def load_nifti(
    path: str | Path,
    *,
    dataset: str | None = None,
    subject: str | None = None,
    reorient: bool = True,
    allow_empty: bool = False,
) -> nib.Nifti1Image:
    """Load a 3D NIfTI image, check it and (by default) reorient it to RAS canonical.

    Raises InputError naming the dataset, subject and file when the file is missing,
    unreadable, not 3D (a 4D image with a single volume is accepted and squeezed),
    contains NaN/Inf, or is all zero (unless `allow_empty`).
    """
    path = Path(path)
    ctx = dict(path=path, dataset=dataset, subject=subject)
    if not path.exists():
        raise InputError("file does not exist", **ctx)
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"cannot read NIfTI file ({type(exc).__name__}: {exc})", **ctx) from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
        img = nib.Nifti1Image(data, img.affine, img.header)
    if data.ndim != 3:
        raise InputError(f"expected a 3D image, got {data.ndim}D with shape {tuple(data.shape)}", **ctx)
    if min(data.shape) < 2:
        raise InputError(f"image has a degenerate shape {tuple(data.shape)}", **ctx)
    if not np.all(np.isfinite(data)):
        n_bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise InputError(f"image contains {n_bad} NaN/Inf voxels", **ctx)
    if not allow_empty and not np.any(data):
        raise InputError("image is empty (all voxels are zero)", **ctx)
    if not np.all(np.isfinite(img.affine)) or abs(np.linalg.det(img.affine[:3, :3])) < 1e-12:
        raise InputError("image has an invalid (singular or non-finite) affine", **ctx)
    img = nib.Nifti1Image(np.asarray(data), img.affine, img.header)
    if reorient:
        img = nib.as_closest_canonical(img)
    return img


def check_same_grid(
    img: nib.Nifti1Image,
    ref: nib.Nifti1Image,
    *,
    path: str | Path,
    dataset: str | None = None,
    subject: str | None = None,
    atol: float = 1e-3,
) -> None:
    """Raise InputError if `img` (e.g. a label) does not share shape and affine with `ref`."""
    if img.shape[:3] != ref.shape[:3]:
        raise InputError(
            f"shape {tuple(img.shape[:3])} differs from its image's shape {tuple(ref.shape[:3])}",
            path=path, dataset=dataset, subject=subject,
        )
    if not np.allclose(img.affine, ref.affine, atol=atol):
        raise InputError(
            "affine differs from its image's affine:\n"
            f"{np.array2string(img.affine, precision=3)}\nvs\n{np.array2string(ref.affine, precision=3)}",
            path=path, dataset=dataset, subject=subject,
        )


def save_nifti(
    data: np.ndarray, affine: np.ndarray, path: str | Path, dtype: np.dtype | type | None = None
) -> None:
    """Write a NIfTI image atomically (temporary name, then rename)."""
    arr = np.asarray(data)
    if dtype is not None:
        arr = arr.astype(dtype)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def load_array(path: str | Path, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Load an already-preprocessed NIfTI (no checks) as (array, affine)."""
    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=dtype), img.affine
