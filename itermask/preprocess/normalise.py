"""Iterative z-score intensity normalisation inside the brain (METHOD.md §1.5)."""
from __future__ import annotations

import numpy as np


def _mean_std(values: np.ndarray, what: str) -> tuple[float, float]:
    if values.size < 2:
        raise ValueError(f"{what}: fewer than 2 voxels to estimate mean/std")
    mean = float(values.mean())
    std = float(values.std())
    if not np.isfinite(std) or std <= 0:
        raise ValueError(f"{what}: intensities are constant (std = {std})")
    return mean, std


def iterative_zscore(
    image: np.ndarray,
    brain: np.ndarray,
    repeats: int = 3,
    clip_sd: float = 3.0,
    background: str | float = "min",
) -> np.ndarray:
    """Z-score with the brain's mean/std, then ``repeats`` times re-estimate mean/std on brain
    voxels whose current value lies within ±``clip_sd`` and re-normalise every voxel.

    Voxels outside the brain are finally set to ``background``: "min" = the minimum of the
    normalised brain voxels, or a number. Statistics use float64, population std; returns float32.
    """
    x = np.asarray(image, dtype=np.float64)
    brain = np.asarray(brain, dtype=bool)
    if brain.shape != x.shape:
        raise ValueError(f"brain mask shape {brain.shape} differs from image shape {x.shape}")
    mean, std = _mean_std(x[brain], "brain")
    z = (x - mean) / std
    for i in range(int(repeats)):
        inside = z[brain]
        mean, std = _mean_std(inside[np.abs(inside) <= clip_sd], f"clipped brain (repeat {i + 1})")
        z = (z - mean) / std
    if isinstance(background, str):
        if background != "min":
            raise ValueError(f"background must be 'min' or a number, got '{background}'")
        bg = float(z[brain].min())
    else:
        bg = float(background)
    z[~brain] = bg
    return z.astype(np.float32)
