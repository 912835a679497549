"""Reading preprocessed arrays on the subject's grid, with InputError naming the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from itermask.errors import InputError
from itermask.io.nifti import load_array


def load_grid_array(
    path: str | Path, what: str, dataset: str, subject: str, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Load an already-preprocessed array, turning read failures into InputError."""
    if not Path(path).exists():
        raise InputError(f"{what} file does not exist", path=path, dataset=dataset, subject=subject)
    try:
        data, affine = load_array(path, dtype=dtype)
    except Exception as exc:
        raise InputError(f"cannot read {what} ({type(exc).__name__}: {exc})",
                         path=path, dataset=dataset, subject=subject) from exc
    if data.ndim != 3:
        raise InputError(f"{what} must be 3D, got shape {data.shape}", path=path, dataset=dataset, subject=subject)
    return data, affine


def check_same_shape(data: np.ndarray, ref: np.ndarray, path: str | Path, dataset: str, subject: str) -> None:
    if data.shape != ref.shape:
        raise InputError(f"shape {data.shape} differs from the brain mask's shape {ref.shape}",
                         path=path, dataset=dataset, subject=subject)
