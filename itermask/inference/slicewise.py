"""A 2D model on a volume, slice by slice: the axial slices with brain are scaled, cropped or
padded to the 2D field of view and resized to the model's size, as the slices files are
(``itermask.preprocess.slices2d``; HF computed on the resized slices at the model's radius),
and the 2D results go back the same way onto the volume grid (error and mask restricted to
the brain).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from itermask.errors import InputError
from itermask.core.highfreq import high_frequency_torch
from itermask.io.samples import Volume


def volume_to_slices(vol: Volume, size: int, hf_radius: int, field_of_view_mm: float) -> dict[str, np.ndarray]:
    """Axial slices with brain of a volume, scaled, in the field of view and resized for a 2D
    model, plus their HF; ``fov`` = the field's side in voxels of the volume."""
    from itermask.preprocess.slices2d import field_pixels, resize_slices, scale_for_2d, to_field

    brain = vol.brain
    z = np.flatnonzero(brain.any(axis=(0, 1)))
    try:
        scaled = np.asarray(scale_for_2d(vol.image, brain), dtype=np.float32)
    except ValueError as exc:
        raise InputError(f"cannot scale the volume for the 2D model ({exc})", path=vol.paths["image"]) from exc
    img = np.moveaxis(scaled[:, :, z], -1, 0)
    br = np.moveaxis(brain[:, :, z], -1, 0)
    fov = field_pixels(field_of_view_mm, float(np.linalg.norm(vol.affine[:3, 0])))
    img_r = np.asarray(resize_slices(to_field(img, fov, -3.0), size), dtype=np.float32)
    br_r = np.asarray(resize_slices(to_field(br, fov, False), size), dtype=bool)
    keep = br_r.reshape(len(br_r), -1).any(axis=1)
    hf_r = high_frequency_torch(torch.from_numpy(img_r[keep]), radius=hf_radius, ndim=2).numpy()
    return {"scaled": scaled, "z": z[keep], "image": img_r[keep], "hf": hf_r, "brain": br_r[keep], "fov": fov}


def resize_back(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n, s, s) -> (n, *shape) by bilinear interpolation (area averaging when shrinking)."""
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[:, None]
    shrink = shape[0] < t.shape[-2] and shape[1] < t.shape[-1]
    mode = "area" if shrink else "bilinear"
    kw = {} if shrink else {"align_corners": False}
    return F.interpolate(t, size=shape, mode=mode, **kw)[:, 0].numpy()


def slices_to_volume(vol: Volume, sl: dict[str, np.ndarray], res: Sequence[Any]) -> dict[str, np.ndarray]:
    """Stack 2D results back into the volume grid (error/mask restricted to the brain)."""
    from itermask.preprocess.slices2d import from_field

    shape = vol.image.shape
    brain = vol.brain
    fov = int(sl["fov"])

    def back(arr: np.ndarray) -> np.ndarray:
        return from_field(resize_back(arr, (fov, fov)), shape[:2], 0.0)

    recon = sl["scaled"].copy()  # slices without brain keep the scaled input
    error = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    if res:
        z = sl["z"]
        r = back(np.stack([q.recon.numpy() for q in res]))
        e = back(np.stack([q.error.numpy() for q in res]))
        m = back(np.stack([q.mask.numpy().astype(np.float32) for q in res])) > 0.5
        inside = from_field(np.ones((len(res), fov, fov), bool), shape[:2], False)
        r = np.where(inside, r, np.moveaxis(sl["scaled"][:, :, z], -1, 0))  # outside the field: the input
        recon[:, :, z] = np.moveaxis(r, 0, -1)
        error[:, :, z] = np.moveaxis(e, 0, -1)
        mask[:, :, z] = np.moveaxis(m, 0, -1)
    return {"recon": recon, "error": np.where(brain, error, 0.0).astype(np.float32), "mask": mask & brain}
