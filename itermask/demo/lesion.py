"""The demo's synthetic lesion: one irregular blob, mostly in white matter, inside the brain."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from itermask.demo.geometry import rotation
from itermask.demo.randomness import smooth_field


def draw_lesion(rng: np.random.Generator, wm: np.ndarray, allowed: np.ndarray, brain: np.ndarray,
                voxel_mm: float, volume_ml: float) -> np.ndarray:
    """Irregular lesion (bool) of about ``volume_ml`` centred in deep white matter.

    Field = max over 3-5 random ellipsoids of (1 - squared Mahalanobis distance) plus
    smooth noise; the threshold is bisected so that the connected part that contains the
    centre (inside ``allowed``) has the target number of voxels.
    """
    radius_mm = (3 * volume_ml * 1000.0 / (4 * np.pi)) ** (1 / 3)
    centre = _lesion_centre(rng, wm, allowed, brain, voxel_mm, radius_mm)
    half = int(np.ceil(2.5 * radius_mm / voxel_mm)) + 2
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(centre + half + 1, wm.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    pts = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
    field = _blob_field(rng, (pts - centre) * voxel_mm, voxel_mm, radius_mm)
    lesion = np.zeros(wm.shape, bool)
    lesion[box] = _grow_to_volume(field, allowed[box], tuple(centre - lo), volume_ml * 1000.0 / voxel_mm ** 3)
    return lesion


def _lesion_centre(rng: np.random.Generator, wm: np.ndarray, allowed: np.ndarray, brain: np.ndarray,
                   voxel_mm: float, radius_mm: float) -> np.ndarray:
    """A random voxel of white matter as deep in the brain as the lesion's radius allows."""
    depth = ndi.distance_transform_edt(brain) * voxel_mm
    for min_depth in (radius_mm, radius_mm / 2, 0.0):
        cand = np.argwhere((wm > 0.9) & (depth > min_depth) & allowed)
        if len(cand):
            break
    if not len(cand):
        cand = np.argwhere(allowed)
    return cand[rng.integers(len(cand))]


def _blob_field(rng: np.random.Generator, pts: np.ndarray, voxel_mm: float, radius_mm: float) -> np.ndarray:
    """Max over 3-5 random ellipsoids (about the centre) of 1 - distance², plus smooth noise."""
    field = np.full(pts.shape[:3], -np.inf)
    for i in range(int(rng.integers(3, 6))):
        offset = np.zeros(3) if i == 0 else rng.normal(0, 0.45 * radius_mm, 3)
        axes = radius_mm * rng.uniform(0.5, 1.2, 3)
        rot = rotation(rng.uniform(0, np.pi, 3))
        local = (pts - offset) @ rot
        field = np.maximum(field, 1.0 - ((local / axes) ** 2).sum(-1))
    return field + 0.35 * smooth_field(rng, field.shape, voxel_mm, max(radius_mm / 2, 2 * voxel_mm))[0]


def _grow_to_volume(field: np.ndarray, ok: np.ndarray, seed_vox: tuple, target: float) -> np.ndarray:
    """The part of ``field > level`` (inside ``ok``) connected to ``seed_vox``, with the level
    bisected so that its voxel count is as close to ``target`` as 30 steps get."""
    def grown(level: float) -> np.ndarray:
        lab, _ = ndi.label((field > level) & ok)
        return lab == lab[seed_vox] if lab[seed_vox] else np.zeros_like(ok)

    low, high = float(field[ok].min()) - 1e-6, float(field[seed_vox])
    for _ in range(30):  # count(level) falls as level rises: bisect onto the target
        mid = 0.5 * (low + high)
        if grown(mid).sum() > target:
            low = mid
        else:
            high = mid
    pick = high if abs(grown(high).sum() - target) <= abs(grown(low).sum() - target) else low
    return grown(pick)
