"""One synthetic demo subject: a raw, unstripped, non-RAS head on an oblique scanner grid.

Everything is drawn from random streams seeded by (seed, subject id) only: pose (rotation
<= 5 deg, translation <= 5 mm, scaling +-5 %), a smooth displacement field (a few mm), an
oblique scanner grid in a native PIL orientation, and per sequence the tissue-contrast jitter
(+-10 %), a smooth multiplicative bias field and Rician noise. Inside the head template's
brain the tissue is the synthetic MNI tissue contrast; the gap between the MNI brain and the
template's skull is filled with CSF. Lesion subjects get one lesion (itermask.demo.lesion).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi

from itermask.demo.anatomy import Anatomy
from itermask.demo.geometry import grid_points, rotation, sample
from itermask.demo.lesion import draw_lesion
from itermask.demo.randomness import smooth_field, subject_rng

# Tissue intensities relative to T1w white matter, and the lesion's, per sequence.
# `scale`: scanner units of 1.0; `nonbrain`: transfer of the head template's T1 intensity
# (relative to its white matter) at HEAD_LEVELS, for skull, muscle, fat and background.
HEAD_LEVELS = (0.0, 0.15, 0.35, 0.7, 1.0, 1.4, 2.0)
CONTRASTS: dict[str, dict] = {
    "T1w": dict(wm=1.0, gm=0.62, csf=0.22, lesion=0.42, scale=700.0,
                nonbrain=(0.0, 0.15, 0.35, 0.7, 1.0, 1.4, 2.0)),
    "FLAIR": dict(wm=0.78, gm=0.95, csf=0.10, lesion=1.55, scale=550.0,
                  nonbrain=(0.0, 0.10, 0.25, 0.55, 0.85, 1.15, 1.5)),
    "T2w": dict(wm=0.55, gm=0.78, csf=1.7, lesion=1.35, scale=450.0,
                nonbrain=(0.0, 0.15, 0.30, 0.45, 0.8, 1.0, 1.3)),
}

NATIVE_AXES = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]]).T  # PIL: i->P, j->I, k->L
FOV_MM = (240.0, 240.0, 180.0)       # along the native axes (A-P, S-I, L-R)
FOV_CENTRE_MM = (0.0, 0.0, -12.0)    # world point at the grid centre (brain centre is the origin)


@dataclass
class SyntheticSubject:
    """One generated subject on its native scanner grid."""

    images: dict[str, np.ndarray]     # sequence -> int16 image
    label: np.ndarray | None          # uint8 lesion label (lesion subjects only)
    brain_mask: np.ndarray            # bool, the generator's brain (MNI brain mask, warped)
    tissue: dict[str, np.ndarray]     # "gm", "wm", "csf": partial volumes in [0, 1]
    affine: np.ndarray
    lesion_volume_ml: float


def check_sequences(sequences: list[str]) -> None:
    """Raise ValueError for a sequence that the generator has no contrast for."""
    for seq in sequences:
        if seq not in CONTRASTS:
            raise ValueError(f"unknown sequence '{seq}' for the demo generator; supported: {sorted(CONTRASTS)}")


def _native_grid(rng: np.random.Generator, voxel_mm: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Scanner grid: PIL axes, small oblique rotation (<= 6 deg), centred near the head."""
    shape = tuple(int(round(f / voxel_mm)) for f in FOV_MM)
    rot = rotation(np.deg2rad(rng.uniform(-6, 6, 3)))
    aff = np.eye(4)
    aff[:3, :3] = rot @ NATIVE_AXES * voxel_mm
    centre = np.asarray(FOV_CENTRE_MM) + rng.uniform(-4, 4, 3)
    aff[:3, 3] = centre - aff[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return shape, aff  # type: ignore[return-value]


def _template_coordinates(rng: np.random.Generator, anatomy: Anatomy, shape: tuple[int, int, int],
                          affine: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Head-template mm coordinates (N, 3) of every native voxel: pose + smooth warp."""
    rot = rotation(np.deg2rad(rng.uniform(-5, 5, 3)))
    scale = 1.0 + rng.uniform(-0.05, 0.05, 3)
    shift = rng.uniform(-5, 5, 3)
    pose = rot @ np.diag(scale)  # template (about its brain centre) -> world
    to_tmpl = np.eye(4)  # world -> template: y = pose^-1 (x - shift) + centre
    to_tmpl[:3, :3] = np.linalg.inv(pose)
    to_tmpl[:3, 3] = anatomy.centre - to_tmpl[:3, :3] @ shift
    tmpl = grid_points(shape, to_tmpl @ affine)
    disp = smooth_field(rng, shape, voxel_mm, sigma_mm=25.0, channels=3) * rng.uniform(1.5, 2.5)
    return tmpl + disp.reshape(3, -1).T


def synthesize_subject(anatomy: Anatomy, subject: str, sequences: list[str], *,
                       voxel_size_mm: float, lesion_ml: float | None = None,
                       seed: int) -> SyntheticSubject:
    """Generate one subject's co-registered sequences (and lesion label if ``lesion_ml``;
    None: a healthy subject) at ``voxel_size_mm``, from the random streams of (``seed``, ``subject``)."""
    check_sequences(sequences)
    geo = subject_rng(seed, subject, "geometry")
    shape, affine = _native_grid(geo, voxel_size_mm)
    tmpl = torch.from_numpy(_template_coordinates(geo, anatomy, shape, affine, voxel_size_mm))
    h2m = torch.from_numpy(anatomy.head_to_mni).float()
    mni_pts = tmpl @ h2m[:3, :3].T + h2m[:3, 3]
    gm, wm, brain = sample(torch.from_numpy(anatomy.mni), anatomy.mni_affine, mni_pts).reshape(3, *shape).numpy()
    head, hbrain = sample(torch.from_numpy(anatomy.head), anatomy.head_affine, tmpl).reshape(2, *shape).numpy()
    brain = np.clip(brain, 0, 1)
    gm, wm = np.clip(gm, 0, 1), np.clip(wm, 0, 1)
    csf = np.clip(brain - gm - wm, 0, 1)
    outer_csf = np.clip(hbrain - brain, 0, 1)  # between the MNI brain and the template's skull
    other = np.clip(1.0 - brain - outer_csf, 0, 1)
    brain_mask = brain >= 0.5

    label, lesion_soft, volume = None, np.zeros(shape, np.float32), 0.0
    if lesion_ml is not None:
        les = subject_rng(seed, subject, "lesion")
        label = draw_lesion(les, wm, brain_mask & (csf < 0.5), brain_mask, voxel_size_mm, float(lesion_ml))
        volume = float(label.sum()) * voxel_size_mm ** 3 / 1000.0
        lesion_soft = np.clip(ndi.gaussian_filter(label.astype(np.float32), 0.7) * 1.3, 0, 1) * brain
        lesion_soft *= 1.0 + 0.1 * smooth_field(les, shape, voxel_size_mm, 6.0)[0]
        lesion_soft = np.clip(lesion_soft, 0, 1)

    images = {}
    for seq in sequences:
        rng = subject_rng(seed, subject, "sequence", seq)
        c = CONTRASTS[seq]
        jit = {k: c[k] * rng.uniform(0.9, 1.1) for k in ("wm", "gm", "csf", "lesion")}
        nonbrain = np.interp(head, HEAD_LEVELS, c["nonbrain"]) * rng.uniform(0.9, 1.1)
        tissue = gm * jit["gm"] + wm * jit["wm"] + (csf + outer_csf) * jit["csf"] + other * nonbrain
        tissue = (1 - lesion_soft) * tissue + lesion_soft * jit["lesion"]
        bias = np.exp(0.12 * smooth_field(rng, shape, voxel_size_mm, 60.0)[0])
        signal = tissue * bias * c["scale"] * rng.uniform(0.85, 1.15)
        sigma = rng.uniform(0.012, 0.025) * c["scale"]
        noisy = np.hypot(signal + sigma * rng.standard_normal(shape, dtype=np.float32),
                         sigma * rng.standard_normal(shape, dtype=np.float32))
        images[seq] = np.clip(np.round(noisy), 0, np.iinfo(np.int16).max).astype(np.int16)
    return SyntheticSubject(images, None if label is None else label.astype(np.uint8), brain_mask,
                            {"gm": gm, "wm": wm, "csf": csf}, affine, volume)
