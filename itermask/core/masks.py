"""Random Gaussian-blob training masks for IterMask (METHOD.md §4).

Masked voxels are ``M = blob & brain``. Every draw takes an explicit
``numpy.random.Generator``; :func:`mask_rng` derives reproducible generators that give a
fresh mask per sample and epoch (default) or one fixed mask per subject (the reference
implementation's accidental behaviour, offered only as an explicit option).

3D (IterMask3D): ``Sigma = R diag(lambda) R^T`` with ``R`` a uniformly random rotation and
``lambda_i ~ U(0.3, 10)``, in units of grid cells. The brain mask is downsampled by a factor
4 (p=1/2), 2 (p=1/4) or 8 (p=1/4) (a cell is brain when any voxel of its block is); the blob
is centred on a random brain cell; ``n_points`` samples of ``N(centre, Sigma)`` are rounded
to the nearest cell, samples outside the grid are dropped (no wrap-around), every hit cell
is masked and the cell grid is upsampled by repetition.

Size scaling (3D): the reference draws Sigma in cells of a 192^3 box (1 mm). For another
box size ``S`` (geometric mean of the shape), with ``k = S / reference_size``, Sigma is
multiplied by ``k^2`` and the number of points by ``k^3``. The expected number of points per
cell at relative position ``x / S`` is then the same as in the reference box, so the blob
keeps its size *relative to the box* (e.g. a 96^3 box at 2 mm or a 64^3 box at 3 mm, which
cover the reference field of view). ``reference_size=None`` keeps Sigma and ``n_points``
as given whatever the box (on small boxes that masks much more of the brain). Measured on an
ellipsoid brain of 1.43 M voxels in a 192^3 box, mean masked brain fractions are 1.0 % (1/2),
6.4 % (1/4) and 40 % (1/8); the reference reports ~1 %, ~7 % and ~35 %.

2D (IterMask2): the reference works on 240^2 slices. A Gaussian with ``c11, c22 ~ U(0.3, 10)``
and correlation ``rho ~ U(-1, 1)`` (``c12 = rho sqrt(c11 c22)``) is centred on a random brain
pixel. Its covariance is in "blob units" of ``240/24 = 10`` px (fine scale, p=2/3) or
``240/96 = 2.5`` px (coarse scale, p=1/3), as in the reference. Square patches of side 4, 8
and 16 px are centred on brain pixels drawn with probability proportional to the density;
``n4 ~ U{100 g, 200 g - 1}`` (fine) or ``U{5 g, 20 g - 1}`` (coarse) with ``g = sqrt(c11 c22)``,
``n8 ~ U{5..9}``, ``n16 ~ U{3..9}``. Patch parts outside the image are dropped.
For an image of size ``H x W`` every length is multiplied by ``s = sqrt(H W) / 240``:
blob units are ``10 s`` / ``2.5 s`` px and patch sides ``round(side * s)`` (at least 1 px);
each patch count is multiplied by ``(side * s / round(side * s))^2`` so the total patch area
relative to the image matches the reference despite the rounding of the sides.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

REFERENCE_SIZE_3D = 192.0
REFERENCE_SIZE_2D = 240.0
DEFAULT_SCALES_3D: tuple[tuple[int, float], ...] = ((4, 0.5), (2, 0.25), (8, 0.25))
PATCH_SIDES_2D: tuple[int, int, int] = (4, 8, 16)


# --------------------------------------------------------------------------------------
# Reproducible generators


def mask_rng(seed: int, subject_index: int, epoch: int, fixed: bool, draw: int = 0) -> np.random.Generator:
    """Generator for one training-mask draw.

    ``fixed=False`` (default behaviour of the pipeline): a different stream for every
    (seed, subject, epoch, draw). ``fixed=True`` ignores ``epoch`` and ``draw``, so every
    epoch sees the same mask for a subject (the reference's accidental behaviour).
    """
    values = {"seed": seed, "subject_index": subject_index, "epoch": epoch, "draw": draw}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"mask_rng: {name} must be a non-negative integer, got {value!r}")
    if fixed:
        entropy = [int(seed), int(subject_index), 0]
    else:
        entropy = [int(seed), int(subject_index), 1, int(epoch), int(draw)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


@dataclass(frozen=True)
class MaskSampler:
    """Draws training masks reproducibly: ``sampler(brain, subject_index, epoch, draw)``.

    ``options`` are passed to :func:`training_mask` (e.g. ``{"factor": 4}`` or
    ``{"reference_size": None}``).
    """

    seed: int
    fixed: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, brain_mask: np.ndarray, subject_index: int, epoch: int, draw: int = 0) -> np.ndarray:
        rng = mask_rng(self.seed, subject_index, epoch, self.fixed, draw)
        return training_mask(brain_mask, rng, **self.options)


# --------------------------------------------------------------------------------------
# Dispatch


def training_mask(brain_mask: np.ndarray, rng: np.random.Generator, **kwargs: Any) -> np.ndarray:
    """Training mask (bool, same shape) for a 3D volume or a 2D slice, dispatched on ndim."""
    brain = _as_brain(brain_mask)
    if brain.ndim == 3:
        return training_mask_3d(brain, rng, **kwargs)
    if brain.ndim == 2:
        return training_mask_2d(brain, rng, **kwargs)
    raise ValueError(f"training_mask: brain mask must be 2D or 3D, got shape {brain.shape}")


def _as_brain(brain_mask: np.ndarray) -> np.ndarray:
    brain = np.asarray(brain_mask)
    if brain.dtype != bool:
        if not np.all(np.isfinite(brain)):
            raise ValueError("brain mask contains non-finite values")
        brain = brain > 0
    if not brain.any():
        raise ValueError(f"brain mask of shape {brain.shape} is empty: cannot place a training mask")
    return brain


def _random_voxel(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Index (ndim,) of a uniformly chosen True element of `mask`."""
    flat = np.flatnonzero(mask)
    return np.array(np.unravel_index(flat[rng.integers(flat.size)], mask.shape))


# --------------------------------------------------------------------------------------
# 3D


def choose_factor(rng: np.random.Generator, scales: Sequence[tuple[int, float]] = DEFAULT_SCALES_3D) -> int:
    """Downsampling factor drawn from ``scales`` = ((factor, probability), ...)."""
    factors = np.array([int(f) for f, _ in scales])
    probs = np.array([float(p) for _, p in scales])
    if np.any(factors < 1) or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
        raise ValueError(f"scales must be (factor >= 1, probability >= 0) pairs summing to 1, got {scales}")
    return int(factors[rng.choice(factors.size, p=probs / probs.sum())])


def downsample_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """Cell grid of `mask`: a cell is True when any voxel of its factor^ndim block is.

    Shapes not divisible by `factor` are padded with False at the high end.
    """
    grid = tuple(-(-n // factor) for n in mask.shape)
    padded = np.zeros(tuple(g * factor for g in grid), dtype=bool)
    padded[tuple(slice(0, n) for n in mask.shape)] = mask
    blocks = padded.reshape([v for g in grid for v in (g, factor)])
    return blocks.any(axis=tuple(range(1, 2 * len(grid), 2)))


def upsample_repeat(cells: np.ndarray, factor: int, shape: Sequence[int]) -> np.ndarray:
    """Repeat every cell factor times along each axis, then crop to `shape`."""
    out = cells
    for axis in range(cells.ndim):
        out = np.repeat(out, factor, axis=axis)
    return out[tuple(slice(0, n) for n in shape)]


def hit_cells(points: np.ndarray, grid_shape: Sequence[int]) -> np.ndarray:
    """Bool grid with every cell hit by a point (points (n, ndim) in cell units).

    Points are rounded to the nearest cell; those outside the grid (negative or beyond the
    last cell) are dropped, never wrapped around.
    """
    cells = np.floor(points + 0.5).astype(np.int64)
    inside = np.all((cells >= 0) & (cells < np.asarray(grid_shape)), axis=1)
    grid = np.zeros(tuple(grid_shape), dtype=bool)
    grid[tuple(cells[inside].T)] = True
    return grid


def random_covariance_3d(rng: np.random.Generator, eig_range: tuple[float, float] = (0.3, 10.0)) -> np.ndarray:
    """Sigma = R diag(lambda) R^T, R uniform on SO(3), lambda_i ~ U(eig_range)."""
    rot = Rotation.random(rng=rng).as_matrix()
    lam = rng.uniform(eig_range[0], eig_range[1], size=3)
    return rot @ np.diag(lam) @ rot.T


def gaussian_blob_cells(
    grid_shape: Sequence[int],
    centre: np.ndarray,
    cov: np.ndarray,
    n_points: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Cells hit by `n_points` samples of N(centre, cov) on a grid (cell units)."""
    chol = np.linalg.cholesky(cov)
    z = rng.standard_normal((int(n_points), len(grid_shape)))
    return hit_cells(np.asarray(centre, dtype=float) + z @ chol.T, grid_shape)


def training_mask_3d(
    brain_mask: np.ndarray,
    rng: np.random.Generator,
    n_points: int = 100_000,
    scales: Sequence[tuple[int, float]] = DEFAULT_SCALES_3D,
    eig_range: tuple[float, float] = (0.3, 10.0),
    factor: int | None = None,
    reference_size: float | None = REFERENCE_SIZE_3D,
) -> np.ndarray:
    """3D Gaussian-blob training mask (bool, brain_mask's shape) = blob & brain.

    `factor` forces the downsampling factor (else drawn from `scales`); `reference_size`
    rescales Sigma for boxes other than 192^3 (module docstring; None = no rescaling).
    """
    brain = _as_brain(brain_mask)
    if brain.ndim != 3:
        raise ValueError(f"training_mask_3d needs a 3D brain mask, got shape {brain.shape}")
    f = choose_factor(rng, scales) if factor is None else int(factor)
    if f < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    cov = random_covariance_3d(rng, eig_range)
    n = int(n_points)
    if reference_size is not None:
        k = float(np.prod(brain.shape)) ** (1.0 / 3.0) / float(reference_size)
        cov, n = cov * k**2, max(1, int(round(n_points * k**3)))
    small = downsample_any(brain, f)
    centre = _random_voxel(small, rng)
    cells = gaussian_blob_cells(small.shape, centre, cov, n, rng)
    return upsample_repeat(cells, f, brain.shape) & brain


# --------------------------------------------------------------------------------------
# 2D


def paint_squares(shape: tuple[int, int], centres: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Bool image with squares of side `sides[i]` centred on `centres[i]` (row, col).

    A square of side s covers rows ``r - s//2 .. r - s//2 + s - 1`` (same for columns); the
    parts outside the image are dropped. Vectorised with a 2D difference array.
    """
    h, w = shape
    centres = np.asarray(centres, dtype=np.int64).reshape(-1, 2)
    sides = np.asarray(sides, dtype=np.int64).reshape(-1)
    r0 = np.clip(centres[:, 0] - sides // 2, 0, h)
    c0 = np.clip(centres[:, 1] - sides // 2, 0, w)
    r1 = np.clip(centres[:, 0] - sides // 2 + sides, 0, h)
    c1 = np.clip(centres[:, 1] - sides // 2 + sides, 0, w)
    keep = (r1 > r0) & (c1 > c0)
    r0, c0, r1, c1 = r0[keep], c0[keep], r1[keep], c1[keep]
    diff = np.zeros((h + 1, w + 1), dtype=np.int64)
    np.add.at(diff, (r0, c0), 1)
    np.add.at(diff, (r0, c1), -1)
    np.add.at(diff, (r1, c0), -1)
    np.add.at(diff, (r1, c1), 1)
    return diff.cumsum(axis=0).cumsum(axis=1)[:h, :w] > 0


def sample_density_pixels(
    candidates: np.ndarray, centre: np.ndarray, cov: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """`n` rows of `candidates` (m, 2) drawn with probability proportional to N(centre, cov)."""
    d = candidates - np.asarray(centre, dtype=float)
    q = np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d)
    p = np.exp(-0.5 * (q - q.min()))
    idx = rng.choice(candidates.shape[0], size=int(n), p=p / p.sum())
    return candidates[idx]


def patch_counts_2d(rng: np.random.Generator, g: float, coarse: bool) -> tuple[int, int, int]:
    """Reference counts of 4-, 8- and 16-px patches for ``g = sqrt(c11 c22)``."""
    lo, hi = (5 * g, 20 * g) if coarse else (100 * g, 200 * g)
    lo_i = max(int(lo), 1)
    n4 = int(rng.integers(lo_i, max(int(hi), lo_i + 1)))
    return n4, int(rng.integers(5, 10)), int(rng.integers(3, 10))


def training_mask_2d(
    brain_mask: np.ndarray,
    rng: np.random.Generator,
    c_range: tuple[float, float] = (0.3, 10.0),
    coarse_p: float = 1.0 / 3.0,
    reference_size: float = REFERENCE_SIZE_2D,
) -> np.ndarray:
    """2D Gaussian-patch training mask (bool, brain_mask's shape) = patches & brain.

    Units and size scaling are described in the module docstring.
    """
    brain = _as_brain(brain_mask)
    if brain.ndim != 2:
        raise ValueError(f"training_mask_2d needs a 2D brain mask, got shape {brain.shape}")
    s = float(np.sqrt(brain.shape[0] * brain.shape[1])) / float(reference_size)
    coarse = bool(rng.random() < coarse_p)
    unit_px = (reference_size / 96.0 if coarse else reference_size / 24.0) * s
    c11, c22 = rng.uniform(c_range[0], c_range[1], size=2)
    rho = rng.uniform(-1.0, 1.0)
    c12 = rho * np.sqrt(c11 * c22)
    cov = np.array([[c11, c12], [c12, c22]]) * unit_px**2
    # keep the covariance numerically positive definite when |rho| is close to 1
    cov += np.eye(2) * 1e-6 * unit_px**2
    centre = _random_voxel(brain, rng)
    counts = patch_counts_2d(rng, float(np.sqrt(c11 * c22)), coarse)

    sides, numbers = [], []
    for nominal, count in zip(PATCH_SIDES_2D, counts):
        side = max(1, int(round(nominal * s)))
        numbers.append(int(round(count * (nominal * s / side) ** 2)))
        sides.append(side)
    side_of_patch = np.repeat(np.array(sides), numbers)
    candidates = np.argwhere(brain)
    centres = sample_density_pixels(candidates, centre, cov, side_of_patch.size, rng)
    return paint_squares(brain.shape, centres, side_of_patch) & brain
