"""Random streams of the demo generator: one per (seed, subject, tags), and smooth random fields."""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi


def subject_rng(seed: int, subject: str, *tags: str) -> np.random.Generator:
    """Random stream that depends only on the seed, the subject id and the tags."""
    digest = hashlib.sha256("\x1f".join((str(subject),) + tags).encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4)]
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words]))


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], voxel_mm: float,
                 sigma_mm: float, channels: int = 1) -> np.ndarray:
    """Smooth random field (channels, *shape) with unit standard deviation per channel.

    White noise on a coarse grid (spacing sigma/2), Gaussian-smoothed there, then
    trilinearly upsampled to ``shape``.
    """
    coarse_mm = sigma_mm / 2.0
    cshape = [max(4, int(np.ceil(n * voxel_mm / coarse_mm)) + 1) for n in shape]
    noise = rng.standard_normal((channels, *cshape))
    out = np.stack([ndi.gaussian_filter(c, 2.0, mode="reflect") for c in noise])
    out /= out.reshape(channels, -1).std(1).reshape(channels, 1, 1, 1) + 1e-12
    up = F.interpolate(torch.from_numpy(out.astype(np.float32))[None], size=tuple(shape),
                       mode="trilinear", align_corners=True)[0]
    return up.numpy()
