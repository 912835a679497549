"""Template anatomy of the demo generator, loaded from pip wheels and brought into one space.

The brain comes from nilearn's MNI152 2009 T1 (brain-only) and its GM/WM probability maps,
the skull and scalp from pydeface's mean head template (1 mm T1 head, its own space); nothing
is downloaded.

Bringing them into one space (once per process): deepbet's box network (its weights ship in
its wheel) gives a coarse brain mask of the head template; an affine transform is fitted
so that the MNI brain mask overlaps that mask (least squares on smoothed masks, 4 mm).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from itermask.demo.geometry import grid_points, pool, sample

REG_SPACING = 4                      # mm, grid of the template-to-template registration


@dataclass(frozen=True)
class Anatomy:
    """Template maps on working grids (float32 arrays, voxel->mm affines).

    ``mni``: channels (GM, WM, brain) on the MNI grid; ``head``: channels (T1 intensity
    relative to its white matter, template brain mask) on the head template's grid;
    ``head_to_mni``: affine from head-template mm to MNI mm; ``centre``: brain centre
    (head-template mm) that subject poses rotate about.
    """

    mni: np.ndarray
    mni_affine: np.ndarray
    head: np.ndarray
    head_affine: np.ndarray
    head_to_mni: np.ndarray
    centre: np.ndarray


def _template_paths() -> dict[str, Path]:
    import nilearn
    import pydeface

    nl = Path(nilearn.__file__).parent / "datasets" / "data"
    paths = {k: nl / f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
    paths["head"] = Path(pydeface.__file__).parent / "data" / "mean_reg2mean.nii.gz"
    for name, p in paths.items():
        if not p.is_file():
            raise FileNotFoundError(f"template '{name}' not found at {p} (nilearn/pydeface install incomplete?)")
    return paths


def _head_brain_probability(head: np.ndarray) -> np.ndarray:
    """Coarse brain mask (0/1 float, head grid) of the head template by deepbet's box network."""
    from deepbet import BrainExtraction
    from deepbet.utils import normalize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bet = BrainExtraction(no_gpu=True)  # CPU: the same mask on every machine
    x = torch.from_numpy(head)[None, None]
    small = F.interpolate(x, (128, 128, 128), mode="nearest-exact")[0, 0]
    lo, hi = small.quantile(0.005), small.quantile(0.995)
    with torch.no_grad():
        prob = bet.bbox_model(normalize(small, lo, hi)[None, None])[:, 1:2]
    lab, n = ndi.label(prob[0, 0].numpy() > 0.5)
    if n == 0:
        raise RuntimeError("deepbet found no brain in the pydeface head template")
    mask = ndi.binary_fill_holes(lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1))
    up = F.interpolate(torch.from_numpy(mask.astype(np.float32))[None, None], head.shape,
                       mode="trilinear", align_corners=False)[0, 0]
    return (up > 0.5).float().numpy()


def _fit_affine(mni_mask: np.ndarray, mni_aff: np.ndarray, head_mask: np.ndarray,
                head_aff: np.ndarray) -> np.ndarray:
    """Affine (MNI mm -> head mm) that overlays the MNI brain mask on the head's brain mask.

    Least squares between the two masks (smoothed by 1.5 voxels), summed over the MNI grid,
    minimised by L-BFGS with an analytic gradient; started from the centroid alignment.
    Deterministic (no random sampling).
    """
    from scipy.optimize import minimize

    m = ndi.gaussian_filter(mni_mask, 1.5)
    h = ndi.gaussian_filter(head_mask, 1.5)
    h_stack = torch.from_numpy(np.stack([h, *np.gradient(h)]).astype(np.float32))
    lin_inv = np.linalg.inv(head_aff[:3, :3])
    pts = grid_points(m.shape, mni_aff).astype(np.float64)
    c_m = pts[mni_mask.reshape(-1) > 0.5].mean(0)
    hp = grid_points(head_mask.shape, head_aff).astype(np.float64)
    c_h = hp[head_mask.reshape(-1) > 0.5].mean(0)
    keep = (m.reshape(-1) > 1e-3) | (ndi.binary_dilation(m > 1e-3, iterations=4).reshape(-1))
    radius = 70.0  # mm: parameters in units of the brain's size keep them comparable
    p = (pts[keep] - c_m) / radius
    target = m.reshape(-1)[keep]

    def cost(x: np.ndarray) -> tuple[float, np.ndarray]:
        a = np.eye(3) + x[:9].reshape(3, 3)
        q = c_h + radius * (p @ a.T + x[9:])
        val, *grad_vox = sample(h_stack, head_aff, torch.from_numpy(q.astype(np.float32))).double().numpy()
        r = val - target
        g_mm = np.stack(grad_vox, 1) @ lin_inv  # d h / d q (per mm)
        w = (2 * radius / len(r)) * r[:, None] * g_mm
        return float((r ** 2).mean()), np.concatenate([(w.T @ p).ravel(), w.sum(0)])

    res = minimize(cost, np.zeros(12), jac=True, method="L-BFGS-B", options={"maxiter": 200})
    a = np.eye(4)
    a[:3, :3] = np.eye(3) + res.x[:9].reshape(3, 3)
    a[:3, 3] = c_h + radius * res.x[9:] - a[:3, :3] @ c_m
    return np.round(a, 4)  # rounding absorbs float noise between machines / thread counts


@lru_cache(maxsize=1)
def _aligned_templates() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full-resolution template stacks and the MNI -> head affine (computed once per process)."""
    paths = _template_paths()
    mni_img = nib.load(paths["t1"])
    t1 = np.asarray(mni_img.dataobj, dtype=np.float32)
    gm = np.asarray(nib.load(paths["gm"]).dataobj, dtype=np.float32) / 255.0
    wm = np.asarray(nib.load(paths["wm"]).dataobj, dtype=np.float32) / 255.0
    brain = ndi.binary_fill_holes(t1 > 0).astype(np.float32)
    gm, wm = gm * brain, wm * brain
    scale = np.maximum(gm + wm, 1.0)  # probabilities must not exceed 1 together
    mni_stack = np.stack([gm / scale, wm / scale, brain])

    head_img = nib.load(paths["head"])
    head = np.asarray(head_img.dataobj, dtype=np.float32)
    hbrain = _head_brain_probability(head)
    head_wm = float(np.percentile(head[hbrain > 0.5], 90))  # bright end of the brain = white matter
    head_stack = np.stack([head / head_wm, hbrain])

    mni4, mni4_aff = pool(mni_stack[2:3], mni_img.affine, REG_SPACING)
    head4, head4_aff = pool(head_stack[1:2], head_img.affine, REG_SPACING)
    mni_to_head = _fit_affine(mni4[0], mni4_aff, head4[0], head4_aff)
    return mni_stack, mni_img.affine, head_stack, head_img.affine, mni_to_head


@lru_cache(maxsize=2)
def _load_anatomy_cached(k: int) -> Anatomy:
    mni_stack, mni_affine, head_stack, head_affine, mni_to_head = _aligned_templates()
    mni_k, mni_aff = pool(mni_stack, mni_affine, k)
    head_k, head_aff = pool(head_stack, head_affine, k)
    brain = mni_stack[2] > 0.5
    centroid = mni_affine[:3, :3] @ np.argwhere(brain).mean(0) + mni_affine[:3, 3]
    centre = mni_to_head[:3, :3] @ centroid + mni_to_head[:3, 3]
    return Anatomy(mni_k, mni_aff, head_k, head_aff, np.linalg.inv(mni_to_head), centre)


def load_anatomy(voxel_size_mm: float = 2.0) -> Anatomy:
    """Templates brought into one space, on working grids of about ``voxel_size_mm``."""
    if not voxel_size_mm > 0:
        raise ValueError(f"voxel_size_mm must be positive, got {voxel_size_mm}")
    return _load_anatomy_cached(max(1, int(round(voxel_size_mm))))
