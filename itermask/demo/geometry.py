"""Grid geometry of the demo generator: voxel grids in mm, trilinear sampling, pooling, rotations."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def pool(data: np.ndarray, affine: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Block-average a (C, X, Y, Z) stack by an integer factor; return it and its affine."""
    out = F.avg_pool3d(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), k).numpy()
    aff = affine.copy()
    aff[:3, :3] = affine[:3, :3] * k
    aff[:3, 3] = affine[:3, :3] @ np.full(3, (k - 1) / 2.0) + affine[:3, 3]
    return out, aff


def grid_points(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """The mm coordinates (N, 3, float32) of every voxel of a grid, in C order."""
    idx = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), -1)
    return idx.reshape(-1, 3) @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)


def sample(vol: torch.Tensor, affine: np.ndarray, pts_mm: torch.Tensor) -> torch.Tensor:
    """Trilinear values of a (C, X, Y, Z) tensor at (N, 3) mm points (zero outside): (C, N)."""
    inv = torch.from_numpy(np.linalg.inv(affine)).to(pts_mm.dtype)
    vox = pts_mm @ inv[:3, :3].T + inv[:3, 3]
    size = torch.tensor(vol.shape[1:], dtype=pts_mm.dtype)
    grid = (2 * vox / (size - 1) - 1).flip(-1)
    out = F.grid_sample(vol[None], grid[None, :, None, None, :], mode="bilinear",
                        padding_mode="zeros", align_corners=True)
    return out[0, :, :, 0, 0]


def rotation(angles_rad: np.ndarray) -> np.ndarray:
    """Rotation matrix Rz @ Ry @ Rx for the angles (a, b, c) about x, y and z."""
    a, b, c = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx
