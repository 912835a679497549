"""Skull-stripping with deepbet (METHOD.md §1.2); its weights ship inside the wheel (offline).

deepbet thresholds its probability map, keeps the largest connected component and fills
holes itself (``BrainExtraction.postprocess``), so no further clean-up is applied here.
"""
from __future__ import annotations

import functools
import warnings

import nibabel as nib
import numpy as np


@functools.lru_cache(maxsize=2)
def _brain_extraction(no_gpu: bool):
    from deepbet import BrainExtraction

    with warnings.catch_warnings():  # deepbet ships TorchScript models; torch.jit.load is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        return BrainExtraction(no_gpu=no_gpu)


def _use_gpu(device: str) -> bool:
    from itermask.io.device import resolve_device

    return resolve_device(device).type == "cuda"


def deepbet_mask(img: nib.Nifti1Image, device: str = "cpu", threshold: float = 0.5) -> np.ndarray:
    """Boolean brain mask of a head image, on the image's own voxel grid.

    ``device``: "cpu", "cuda" or "auto". Raises ValueError when deepbet finds no brain.
    """
    bet = _brain_extraction(not _use_gpu(device))
    data = np.asarray(img.dataobj, dtype=np.float32)
    head = nib.Nifti1Image(data, img.affine, img.header)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _, mask_img, _ = bet.run(head, threshold=threshold)
    except (AssertionError, ValueError) as exc:  # empty foreground / no component
        raise ValueError(f"deepbet found no brain ({type(exc).__name__}: {exc})") from exc
    mask = np.asarray(mask_img.dataobj).astype(bool)
    if mask.shape != img.shape[:3]:
        raise RuntimeError(f"deepbet returned shape {mask.shape} for an image of shape {img.shape}")
    if not mask.any():
        raise ValueError("deepbet found no brain (empty mask)")
    return mask
