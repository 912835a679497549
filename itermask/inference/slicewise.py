"""A 2D model on a volume, slice by slice: the axial slices with brain are scaled and resized to
the model's size (HF computed on the resized slices at the model's radius), and the 2D
results are resized back onto the volume grid (error and mask restricted to the brain).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from itermask.errors import InputError
from itermask.core.highfreq import high_frequency_torch
from itermask.io.samples import Volume


def volume_to_slices(vol: Volume, size: int, hf_radius: int) -> dict[str, np.ndarray]:
    """Axial slices with brain of a volume, scaled and resized for a 2D model, plus their HF."""
    from itermask.preprocess.slices2d import resize_slices, scale_for_2d

    brain = vol.brain
    z = np.flatnonzero(brain.any(axis=(0, 1)))
    try:
        scaled = np.asarray(scale_for_2d(vol.image, brain), dtype=np.float32)
    except ValueError as exc:
        raise InputError(f"cannot scale the volume for the 2D model ({exc})", path=vol.paths["image"]) from exc
    img = np.moveaxis(scaled[:, :, z], -1, 0)
    br = np.moveaxis(brain[:, :, z], -1, 0)
    img_r = np.asarray(resize_slices(img, size), dtype=np.float32)
    br_r = np.asarray(resize_slices(br, size), dtype=bool)
    keep = br_r.reshape(len(br_r), -1).any(axis=1)
    hf_r = high_frequency_torch(torch.from_numpy(img_r[keep]), hf_radius, ndim=2).numpy()
    return {"scaled": scaled, "z": z[keep], "image": img_r[keep], "hf": hf_r, "brain": br_r[keep]}


def resize_back(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n, s, s) -> (n, *shape) by bilinear interpolation (area averaging when shrinking)."""
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[:, None]
    shrink = shape[0] < t.shape[-2] and shape[1] < t.shape[-1]
    mode = "area" if shrink else "bilinear"
    kw = {} if shrink else {"align_corners": False}
    return F.interpolate(t, size=shape, mode=mode, **kw)[:, 0].numpy()


def slices_to_volume(vol: Volume, sl: dict[str, np.ndarray], res: Sequence[Any]) -> dict[str, np.ndarray]:
    """Stack 2D results back into the volume grid (error/mask restricted to the brain)."""
    shape = vol.image.shape
    brain = vol.brain
    recon = sl["scaled"].copy()  # slices without brain keep the scaled input
    error = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    if res:
        z = sl["z"]
        r = resize_back(np.stack([q.recon.numpy() for q in res]), shape[:2])
        e = resize_back(np.stack([q.error.numpy() for q in res]), shape[:2])
        m = resize_back(np.stack([q.mask.numpy().astype(np.float32) for q in res]), shape[:2]) > 0.5
        recon[:, :, z] = np.moveaxis(r, 0, -1)
        error[:, :, z] = np.moveaxis(e, 0, -1)
        mask[:, :, z] = np.moveaxis(m, 0, -1)
    return {"recon": recon, "error": np.where(brain, error, 0.0).astype(np.float32), "mask": mask & brain}
