"""Normalisation (per sequence, stage of rule preprocess_subject): resampling onto the subject's
grid and iterative z-score inside the brain (METHOD.md §1.3, §1.5), with the HF image at the
configured radius."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from itermask.core.highfreq import high_frequency
from itermask.errors import InputError
from itermask.io.nifti import load_nifti, save_nifti
from itermask.preprocess.grid import load_grid_array


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
    repeats: int,
    clip_sd: float,
    background: str | float,
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


def resample_and_normalise(
    image_path: str | Path,
    grid_path: str | Path,
    out_image: str | Path,
    out_hf: str | Path,
    *,
    repeats: int,
    clip_sd: float,
    background: str | float,
    hf_radius: int,
    dataset: str,
    subject: str,
) -> None:
    """Linearly resample the (validated, RAS) raw image onto the grid of the brain mask
    ``grid_path``, z-score it iteratively in the brain (constant background) and write it
    with its 3D high-frequency image; float32, no intermediate file."""
    from itermask.preprocess.resample import resample_to_grid  # antspyx: slow import

    img = load_nifti(image_path, dataset=dataset, subject=subject)
    brain, affine = load_grid_array(grid_path, "brain mask", dataset, subject)
    x = np.asarray(resample_to_grid(img, brain.shape, affine, "linear"), dtype=np.float32)
    try:
        z = iterative_zscore(x, brain > 0, repeats=repeats, clip_sd=clip_sd, background=background)
    except ValueError as exc:
        raise InputError(f"cannot normalise: {exc}", path=image_path, dataset=dataset, subject=subject) from exc
    hf = high_frequency(z, radius=hf_radius)
    save_nifti(z, affine, out_image, dtype=np.float32)
    save_nifti(hf, affine, out_hf, dtype=np.float32)
