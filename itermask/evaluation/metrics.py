"""Segmentation and detection metrics (METHOD.md §8), with the definitions used in the tables.

Segmentation (per subject; ``pred``/``truth`` binary arrays of the same shape):

- dice = 2|P∩G| / (|P|+|G|), jaccard = |P∩G| / |P∪G|, sensitivity = |P∩G| / |G|,
  precision = |P∩G| / |P|. A ratio whose denominator is 0 is NaN (undefined), never 0 or 1.
- assd_mm: average symmetric *surface* distance in mm (SciPy Euclidean distance transform with
  the voxel spacing, as MONAI's get_edge_surface_distance; surface = voxels of a mask with a face-neighbour outside it): the mean of
  all distances from each surface voxel of P to the surface of G and from each surface voxel of
  G to the surface of P, pooled. NaN when P or G is empty. For stacks of 2D slices
  (``slice_axis``) surfaces and distances are in-plane per slice and pooled over slices; a
  slice where exactly one of P, G is empty makes the result NaN.
  (The reference computed ITK's average Hausdorff distance over all voxels instead.)
- auroc_voxel: ROC AUC of the error map against the label over brain voxels only (the reference
  included background); NaN when the brain holds only one class.
- psnr / ssim on healthy brain tissue H = brain ∧ ¬lesion, reconstruction vs input, data range
  L = max(x[H]) − min(x[H]). PSNR = 10·log10(L² / mean((x − x̂)²) over H). SSIM: scikit-image's
  SSIM map (7-voxel window, Gaussian=False, K1 = 0.01, K2 = 0.03, data_range L) of the input and
  the reconstruction with every voxel outside H replaced by the input, averaged over H; 2D
  stacks use per-slice 2D SSIM.
- size class of the lesion volume n (voxels/pixels) with bins (b1, b2): small n < b1,
  medium b1 ≤ n ≤ b2, large n > b2; "none" when n = 0.

Detection (one score per scan, label 1 = anomalous, higher score = more anomalous):

- auroc, auprc (average precision), scikit-learn.
- fpr@q TPR: the lowest false-positive rate among ROC operating points with TPR ≥ q.
- fnr@q TNR: the lowest false-negative rate among operating points with TNR ≥ q, i.e. the
  threshold t is the smallest score with at most (1 − q) of the normal scans at or above it
  (the q-quantile of the normal scores, ties counted conservatively), FNR = fraction of
  anomalous scans below t. The reference code computes its FNR with a different formula, so its
  numbers are not directly comparable.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

SEGMENTATION_METRICS = ("dice", "sensitivity", "precision", "jaccard", "assd_mm", "auroc_voxel", "psnr", "ssim")
DETECTION_METRICS = ("auroc", "auprc", "fpr80", "fpr90", "fnr80", "fnr90")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


def overlap_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice, Jaccard, sensitivity and precision of two binary masks (NaN when undefined)."""
    p = np.asarray(pred, dtype=bool)
    g = np.asarray(truth, dtype=bool)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from label shape {g.shape}")
    tp = int(np.count_nonzero(p & g))
    n_p = int(np.count_nonzero(p))
    n_g = int(np.count_nonzero(g))
    return {
        "dice": _ratio(2 * tp, n_p + n_g),
        "jaccard": _ratio(tp, n_p + n_g - tp),
        "sensitivity": _ratio(tp, n_g),
        "precision": _ratio(tp, n_p),
    }


def _edges(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: the mask minus its erosion (face connectivity; MONAI's get_mask_edges)."""
    return mask & ~ndi.binary_erosion(mask)


def _surface_distances(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distances (mm) from each surface voxel of one mask to the other's surface, both ways
    (MONAI's symmetric ``get_edge_surface_distance``, with SciPy: no torch import per job)."""
    ep, eg = _edges(pred), _edges(truth)
    to_g = ndi.distance_transform_edt(~eg, sampling=spacing)[ep]
    to_p = ndi.distance_transform_edt(~ep, sampling=spacing)[eg]
    return np.concatenate([to_g, to_p]).astype(np.float64)


def assd_mm(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], slice_axis: int | None = None
) -> float:
    """Average symmetric surface distance in mm (NaN if a mask is empty; see module doc)."""
    p = np.asarray(pred, dtype=bool)
    g = np.asarray(truth, dtype=bool)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from label shape {g.shape}")
    if not p.any() or not g.any():
        return float("nan")
    spacing = [float(s) for s in spacing]
    if slice_axis is None:
        if len(spacing) != p.ndim:
            raise ValueError(f"spacing {spacing} does not match a {p.ndim}D mask")
        d = _surface_distances(p, g, spacing)
        return float(d.mean())
    p = np.moveaxis(p, slice_axis, -1)
    g = np.moveaxis(g, slice_axis, -1)
    plane = [s for i, s in enumerate(spacing) if i != slice_axis % len(spacing)] if len(spacing) == p.ndim else spacing
    parts = []
    for k in range(p.shape[-1]):
        pk, gk = p[..., k], g[..., k]
        if not pk.any() and not gk.any():
            continue
        if not pk.any() or not gk.any():
            return float("nan")
        parts.append(_surface_distances(pk, gk, plane))
    return float(np.concatenate(parts).mean())


def voxel_auroc(error: np.ndarray, label: np.ndarray, brain: np.ndarray) -> float:
    """ROC AUC of the error map against the label, brain voxels only (NaN if one class)."""
    from sklearn.metrics import roc_auc_score

    b = np.asarray(brain, dtype=bool)
    y = np.asarray(label, dtype=bool)[b]
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(error, dtype=np.float64)[b]))


def healthy_tissue_quality(
    image: np.ndarray,
    recon: np.ndarray,
    brain: np.ndarray,
    label: np.ndarray | None = None,
    slice_axis: int | None = None,
) -> dict[str, float]:
    """PSNR and SSIM of the reconstruction on healthy brain tissue (see module doc)."""
    from skimage.metrics import structural_similarity

    x = np.asarray(image, dtype=np.float64)
    r = np.asarray(recon, dtype=np.float64)
    healthy = np.asarray(brain, dtype=bool)
    if label is not None:
        healthy = healthy & ~np.asarray(label, dtype=bool)
    if x.shape != r.shape or x.shape != healthy.shape:
        raise ValueError(f"image {x.shape}, reconstruction {r.shape} and masks {healthy.shape} differ in shape")
    if np.count_nonzero(healthy) < 2:
        return {"psnr": float("nan"), "ssim": float("nan")}
    xs = x[healthy]
    data_range = float(xs.max() - xs.min())
    if data_range <= 0:
        return {"psnr": float("nan"), "ssim": float("nan")}
    mse = float(np.mean((xs - r[healthy]) ** 2))
    psnr = float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))
    r_h = np.where(healthy, r, x)
    if slice_axis is None:
        _, smap = structural_similarity(x, r_h, data_range=data_range, full=True)
    else:
        xm, rm = np.moveaxis(x, slice_axis, -1), np.moveaxis(r_h, slice_axis, -1)
        smap = np.stack(
            [structural_similarity(xm[..., k], rm[..., k], data_range=data_range, full=True)[1] for k in range(xm.shape[-1])],
            axis=-1,
        )
        smap = np.moveaxis(smap, -1, slice_axis)
    return {"psnr": psnr, "ssim": float(smap[healthy].mean())}


def size_class(n_voxels: int, bins: Sequence[int]) -> str:
    """small (< b1), medium (b1..b2), large (> b2), or none (0 voxels); ``bins`` = (b1, b2)."""
    b1, b2 = int(bins[0]), int(bins[1])
    n = int(n_voxels)
    if n <= 0:
        return "none"
    if n < b1:
        return "small"
    return "medium" if n <= b2 else "large"


def segmentation_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    *,
    error: np.ndarray,
    brain: np.ndarray,
    spacing: Sequence[float],
    size_bins: Sequence[int],
    slice_axis: int | None = None,
) -> dict[str, float | int | str]:
    """Overlap metrics, ASSD, voxel AUROC, lesion size and size class (``size_bins``: the
    small/medium and medium/large bounds in voxels, `size_class`) of one subject."""
    out: dict[str, float | int | str] = dict(overlap_metrics(pred, truth))
    out["assd_mm"] = assd_mm(pred, truth, spacing, slice_axis=slice_axis)
    out["auroc_voxel"] = voxel_auroc(error, truth, brain)
    n = int(np.count_nonzero(truth))
    out["lesion_voxels"] = n
    out["size_class"] = size_class(n, size_bins)
    return out


# ----------------------------------------------------------------------------- detection
def fpr_at_tpr(labels: Sequence[int], scores: Sequence[float], tpr_level: float) -> float:
    """Lowest FPR among ROC operating points with TPR ≥ ``tpr_level``."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    ok = tpr >= tpr_level - 1e-12
    return float(fpr[ok].min())


def fnr_at_tnr(labels: Sequence[int], scores: Sequence[float], tnr_level: float) -> float:
    """Lowest FNR among ROC operating points with TNR ≥ ``tnr_level``."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    ok = (1.0 - fpr) >= tnr_level - 1e-12
    return float((1.0 - tpr[ok]).min())


def detection_metrics(labels: Sequence[int], scores: Sequence[float]) -> dict[str, float]:
    """AUROC, AUPRC, FPR at 80/90 % TPR, FNR at 80/90 % TNR (NaN without both classes)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.all(np.isfinite(s)):
        raise ValueError("detection scores contain NaN/Inf")
    if y.size == 0 or y.all() or not y.any():
        return {k: float("nan") for k in DETECTION_METRICS}
    return {
        "auroc": float(roc_auc_score(y, s)),
        "auprc": float(average_precision_score(y, s)),
        "fpr80": fpr_at_tpr(y, s, 0.8),
        "fpr90": fpr_at_tpr(y, s, 0.9),
        "fnr80": fnr_at_tnr(y, s, 0.8),
        "fnr90": fnr_at_tnr(y, s, 0.9),
    }
