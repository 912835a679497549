"""The embedded demo dataset: raw, unstripped, non-RAS T1w/FLAIR/T2w heads with lesions.

Anatomy comes from template images that ship inside pip wheels (nothing is downloaded):
the brain from nilearn's MNI152 2009 T1 (brain-only) and its GM/WM probability maps, the
skull and scalp from pydeface's mean head template (1 mm T1 head, its own space).

Bringing them into one space (once per call): deepbet's box network (its weights ship in
its wheel) gives a coarse brain mask of the head template; an affine transform is fitted
so that the MNI brain mask overlaps that mask (least squares on smoothed masks, 4 mm).
Inside the head template's brain the tissue is replaced by the synthetic MNI tissue
contrast; the gap between the MNI brain and the template's skull is filled with CSF.

Per subject, everything is drawn from a random stream seeded by (seed, subject id) only:
pose (rotation <= 5 deg, translation <= 5 mm, scaling +-5 %), a smooth displacement field
(a few mm), an oblique scanner grid in a native PIL orientation, and per sequence the
tissue-contrast jitter (+-10 %), a smooth multiplicative bias field and Rician noise.
Lesion subjects get one irregular lesion (smoothly thresholded random ellipsoids plus smooth
noise), mostly in white matter, always inside the brain mask.
"""
from __future__ import annotations

import hashlib
import string
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from itermask.io.atomic import write_text
from itermask.errors import ConfigError
from itermask.io.nifti import save_nifti

LESION_SPLIT = "test_lesion"

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


@dataclass
class SyntheticSubject:
    """One generated subject on its native scanner grid."""

    images: dict[str, np.ndarray]     # sequence -> int16 image
    label: np.ndarray | None          # uint8 lesion label (lesion subjects only)
    brain_mask: np.ndarray            # bool, the generator's brain (MNI brain mask, warped)
    tissue: dict[str, np.ndarray]     # "gm", "wm", "csf": partial volumes in [0, 1]
    affine: np.ndarray
    lesion_volume_ml: float


# ----------------------------------------------------------------------------- templates
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


def _pool(data: np.ndarray, affine: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Block-average a (C, X, Y, Z) stack by an integer factor; return it and its affine."""
    out = F.avg_pool3d(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), k).numpy()
    aff = affine.copy()
    aff[:3, :3] = affine[:3, :3] * k
    aff[:3, 3] = affine[:3, :3] @ np.full(3, (k - 1) / 2.0) + affine[:3, 3]
    return out, aff


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


def _grid_points(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), -1)
    return idx.reshape(-1, 3) @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)


def _sample(vol: torch.Tensor, affine: np.ndarray, pts_mm: torch.Tensor) -> torch.Tensor:
    """Trilinear values of a (C, X, Y, Z) tensor at (N, 3) mm points (zero outside): (C, N)."""
    inv = torch.from_numpy(np.linalg.inv(affine)).to(pts_mm.dtype)
    vox = pts_mm @ inv[:3, :3].T + inv[:3, 3]
    size = torch.tensor(vol.shape[1:], dtype=pts_mm.dtype)
    grid = (2 * vox / (size - 1) - 1).flip(-1)
    out = F.grid_sample(vol[None], grid[None, :, None, None, :], mode="bilinear",
                        padding_mode="zeros", align_corners=True)
    return out[0, :, :, 0, 0]


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
    pts = _grid_points(m.shape, mni_aff).astype(np.float64)
    c_m = pts[mni_mask.reshape(-1) > 0.5].mean(0)
    hp = _grid_points(head_mask.shape, head_aff).astype(np.float64)
    c_h = hp[head_mask.reshape(-1) > 0.5].mean(0)
    keep = (m.reshape(-1) > 1e-3) | (ndi.binary_dilation(m > 1e-3, iterations=4).reshape(-1))
    radius = 70.0  # mm: parameters in units of the brain's size keep them comparable
    p = (pts[keep] - c_m) / radius
    target = m.reshape(-1)[keep]

    def cost(x: np.ndarray) -> tuple[float, np.ndarray]:
        a = np.eye(3) + x[:9].reshape(3, 3)
        q = c_h + radius * (p @ a.T + x[9:])
        val, *grad_vox = _sample(h_stack, head_aff, torch.from_numpy(q.astype(np.float32))).double().numpy()
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

    mni4, mni4_aff = _pool(mni_stack[2:3], mni_img.affine, REG_SPACING)
    head4, head4_aff = _pool(head_stack[1:2], head_img.affine, REG_SPACING)
    mni_to_head = _fit_affine(mni4[0], mni4_aff, head4[0], head4_aff)
    return mni_stack, mni_img.affine, head_stack, head_img.affine, mni_to_head


@lru_cache(maxsize=2)
def _load_anatomy_cached(k: int) -> Anatomy:
    mni_stack, mni_affine, head_stack, head_affine, mni_to_head = _aligned_templates()
    mni_k, mni_aff = _pool(mni_stack, mni_affine, k)
    head_k, head_aff = _pool(head_stack, head_affine, k)
    brain = mni_stack[2] > 0.5
    centroid = mni_affine[:3, :3] @ np.argwhere(brain).mean(0) + mni_affine[:3, 3]
    centre = mni_to_head[:3, :3] @ centroid + mni_to_head[:3, 3]
    return Anatomy(mni_k, mni_aff, head_k, head_aff, np.linalg.inv(mni_to_head), centre)


def load_anatomy(voxel_size_mm: float = 2.0) -> Anatomy:
    """Templates brought into one space, on working grids of about ``voxel_size_mm``."""
    if not voxel_size_mm > 0:
        raise ValueError(f"voxel_size_mm must be positive, got {voxel_size_mm}")
    return _load_anatomy_cached(max(1, int(round(voxel_size_mm))))


# ----------------------------------------------------------------------------- randomness
def subject_rng(seed: int, subject: str, *tags: str) -> np.random.Generator:
    """Random stream that depends only on the seed, the subject id and the tags."""
    digest = hashlib.sha256("\x1f".join((str(subject),) + tags).encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4)]
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words]))


def _rotation(angles_rad: np.ndarray) -> np.ndarray:
    a, b, c = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


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


# ----------------------------------------------------------------------------- one subject
def _native_grid(rng: np.random.Generator, voxel_mm: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Scanner grid: PIL axes, small oblique rotation (<= 6 deg), centred near the head."""
    shape = tuple(int(round(f / voxel_mm)) for f in FOV_MM)
    rot = _rotation(np.deg2rad(rng.uniform(-6, 6, 3)))
    aff = np.eye(4)
    aff[:3, :3] = rot @ NATIVE_AXES * voxel_mm
    centre = np.asarray(FOV_CENTRE_MM) + rng.uniform(-4, 4, 3)
    aff[:3, 3] = centre - aff[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return shape, aff  # type: ignore[return-value]


def _template_coordinates(rng: np.random.Generator, anatomy: Anatomy, shape: tuple[int, int, int],
                          affine: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Head-template mm coordinates (N, 3) of every native voxel: pose + smooth warp."""
    rot = _rotation(np.deg2rad(rng.uniform(-5, 5, 3)))
    scale = 1.0 + rng.uniform(-0.05, 0.05, 3)
    shift = rng.uniform(-5, 5, 3)
    pose = rot @ np.diag(scale)  # template (about its brain centre) -> world
    to_tmpl = np.eye(4)  # world -> template: y = pose^-1 (x - shift) + centre
    to_tmpl[:3, :3] = np.linalg.inv(pose)
    to_tmpl[:3, 3] = anatomy.centre - to_tmpl[:3, :3] @ shift
    tmpl = _grid_points(shape, to_tmpl @ affine)
    disp = smooth_field(rng, shape, voxel_mm, sigma_mm=25.0, channels=3) * rng.uniform(1.5, 2.5)
    return tmpl + disp.reshape(3, -1).T


def _lesion(rng: np.random.Generator, wm: np.ndarray, allowed: np.ndarray, brain: np.ndarray,
            voxel_mm: float, volume_ml: float) -> np.ndarray:
    """Irregular lesion (bool) of about ``volume_ml`` centred in deep white matter.

    Field = max over 3-5 random ellipsoids of (1 - squared Mahalanobis distance) plus
    smooth noise; the threshold is bisected so that the connected part that contains the
    centre (inside ``allowed``) has the target number of voxels.
    """
    target = volume_ml * 1000.0 / voxel_mm ** 3
    radius_mm = (3 * volume_ml * 1000.0 / (4 * np.pi)) ** (1 / 3)
    depth = ndi.distance_transform_edt(brain) * voxel_mm
    for min_depth in (radius_mm, radius_mm / 2, 0.0):
        cand = np.argwhere((wm > 0.9) & (depth > min_depth) & allowed)
        if len(cand):
            break
    if not len(cand):
        cand = np.argwhere(allowed)
    centre = cand[rng.integers(len(cand))]
    half = int(np.ceil(2.5 * radius_mm / voxel_mm)) + 2
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(centre + half + 1, wm.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    pts = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
    pts = (pts - centre) * voxel_mm
    field = np.full(pts.shape[:3], -np.inf)
    for i in range(int(rng.integers(3, 6))):
        offset = np.zeros(3) if i == 0 else rng.normal(0, 0.45 * radius_mm, 3)
        axes = radius_mm * rng.uniform(0.5, 1.2, 3)
        rot = _rotation(rng.uniform(0, np.pi, 3))
        local = (pts - offset) @ rot
        field = np.maximum(field, 1.0 - ((local / axes) ** 2).sum(-1))
    field = field + 0.35 * smooth_field(rng, field.shape, voxel_mm, max(radius_mm / 2, 2 * voxel_mm))[0]
    ok = allowed[box]
    seed_vox = tuple(centre - lo)

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
    lesion = np.zeros(wm.shape, bool)
    pick = high if abs(grown(high).sum() - target) <= abs(grown(low).sum() - target) else low
    lesion[box] = grown(pick)
    return lesion


def synthesize_subject(anatomy: Anatomy, subject: str, sequences: list[str], *,
                       voxel_size_mm: float = 2.0, lesion_ml: float | None = None,
                       seed: int = 0) -> SyntheticSubject:
    """Generate one subject's co-registered sequences (and lesion label if ``lesion_ml``)."""
    for seq in sequences:
        if seq not in CONTRASTS:
            raise ValueError(f"unknown sequence '{seq}' for the demo generator; "
                             f"supported: {sorted(CONTRASTS)}")
    geo = subject_rng(seed, subject, "geometry")
    shape, affine = _native_grid(geo, voxel_size_mm)
    tmpl = torch.from_numpy(_template_coordinates(geo, anatomy, shape, affine, voxel_size_mm))
    h2m = torch.from_numpy(anatomy.head_to_mni).float()
    mni_pts = tmpl @ h2m[:3, :3].T + h2m[:3, 3]
    gm, wm, brain = _sample(torch.from_numpy(anatomy.mni), anatomy.mni_affine, mni_pts).reshape(3, *shape).numpy()
    head, hbrain = _sample(torch.from_numpy(anatomy.head), anatomy.head_affine, tmpl).reshape(2, *shape).numpy()
    brain = np.clip(brain, 0, 1)
    gm, wm = np.clip(gm, 0, 1), np.clip(wm, 0, 1)
    csf = np.clip(brain - gm - wm, 0, 1)
    outer_csf = np.clip(hbrain - brain, 0, 1)  # between the MNI brain and the template's skull
    other = np.clip(1.0 - brain - outer_csf, 0, 1)
    brain_mask = brain >= 0.5

    label, lesion_soft, volume = None, np.zeros(shape, np.float32), 0.0
    if lesion_ml is not None:
        les = subject_rng(seed, subject, "lesion")
        label = _lesion(les, wm, brain_mask & (csf < 0.5), brain_mask, voxel_size_mm, float(lesion_ml))
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


# ----------------------------------------------------------------------------- stage
def _check_pattern(pattern: str, fields: set[str], what: str) -> None:
    names = {f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None}
    if not fields <= names or names - fields:
        raise ConfigError(f"demo {what} '{pattern}' must use exactly the placeholders "
                          f"{sorted('{' + f + '}' for f in fields)}, found {sorted(names)}")


def dataset_root(pattern: str) -> Path:
    """The folder above the first path component that contains ``{subject}``."""
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if "{subject}" in part:
            return Path(*parts[:i]) if i else Path(".")
    raise ConfigError(f"pattern '{pattern}' has no {{subject}} placeholder")


def generate_demo(pattern: str, label_pattern: str, splits: dict[str, list[str]], sequences: list[str], *,
                  voxel_size_mm: float = 2.0, lesion_volumes_ml: list[float] = (0.5, 2.0, 8.0, 25.0),
                  seed: int = 0) -> list[Path]:
    """Write every subject's sequences (+ label for ``test_lesion``) and participants.tsv.

    Lesion sizes cycle through ``lesion_volumes_ml`` in the order of the ``test_lesion``
    list. Returns the written paths (images, labels, participants.tsv).
    """
    _check_pattern(pattern, {"subject", "sequence"}, "pattern")
    _check_pattern(label_pattern, {"subject"}, "label_pattern")
    for seq in sequences:
        if seq not in CONTRASTS:
            raise ValueError(f"unknown sequence '{seq}' for the demo generator; supported: {sorted(CONTRASTS)}")
    volumes = [float(v) for v in lesion_volumes_ml]
    if not volumes or min(volumes) <= 0:
        raise ConfigError(f"demo lesion_volumes_ml must be positive numbers, got {list(lesion_volumes_ml)}")
    seen: dict[str, str] = {}
    for split, ids in splits.items():
        for s in ids:
            if s in seen:
                raise ConfigError(f"demo subject '{s}' is in splits '{seen[s]}' and '{split}'")
            seen[s] = split
    lesion_of = {s: volumes[i % len(volumes)] for i, s in enumerate(splits.get(LESION_SPLIT, []))}

    anatomy = load_anatomy(voxel_size_mm)
    written: list[Path] = []
    rows = ["subject\tsplit\tlesion_target_ml\tlesion_volume_ml"]
    for subject, split in seen.items():
        sub = synthesize_subject(anatomy, subject, list(sequences), voxel_size_mm=voxel_size_mm,
                                 lesion_ml=lesion_of.get(subject), seed=seed)
        for seq, img in sub.images.items():
            path = Path(pattern.format(subject=subject, sequence=seq))
            save_nifti(img, sub.affine, path, dtype=np.int16)
            written.append(path)
        if sub.label is not None:
            path = Path(label_pattern.format(subject=subject))
            save_nifti(sub.label, sub.affine, path, dtype=np.uint8)
            written.append(path)
        target = f"{lesion_of[subject]:g}" if subject in lesion_of else "n/a"
        rows.append(f"{subject}\t{split}\t{target}\t{sub.lesion_volume_ml:.3f}")
    tsv = dataset_root(pattern) / "participants.tsv"
    write_text(tsv, "\n".join(rows) + "\n")
    written.append(tsv)
    return written
