"""The reference code's metric definitions (METHOD.md §8), offered beside ours and named in captions.

- ``precision_ref``: precision with the precision of an empty prediction counted as 1 (ours
  leaves it undefined, NaN).
- ``psnr_ref`` = 20·log10(peak / √MSE), MSE over healthy brain tissue H = brain ∧ ¬lesion (as
  ours); peak = the maximum of the input over H across every subject of the test set (one
  experiment × test dataset), as IterMask3D's ``test.py`` takes it. Ours uses each subject's
  data range of x on H instead.
- ``ssim_ref``: SSIM as torchmetrics' ``structural_similarity_index_measure`` computes it, with
  the arguments IterMask2's ``test.py`` passes: input and reconstruction multiplied by H;
  Gaussian window σ = 1.5, 11 taps, K1 = 0.01, K2 = 0.03; data range = max − min of
  reconstruction·brain across the test set; reflect padding by 5, the SSIM map cropped by 5 on
  every side and averaged over the whole (cropped) image, background included. Volumes use a 3D
  window; stacks of 2D slices (slice axis) are averaged slice by slice, then over slices
  (torchmetrics' batch mean).

The two test-set constants come from ``reference_ranges`` over the subjects of one experiment ×
test dataset (thresholds and summaries are never pooled across test datasets either).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy.ndimage import correlate1d

SIGMA = 1.5
K1, K2 = 0.01, 0.03


def precision_ref(pred: np.ndarray, truth: np.ndarray) -> float:
    """|P∩G| / |P|, 1 when P is empty (the reference's convention)."""
    p = np.asarray(pred, dtype=bool)
    n_p = int(np.count_nonzero(p))
    if n_p == 0:
        return 1.0
    return float(np.count_nonzero(p & np.asarray(truth, dtype=bool))) / n_p


@dataclass(frozen=True)
class ReferenceRanges:
    """The test-set constants of ``psnr_ref`` (``peak``) and ``ssim_ref`` (``data_range``)."""

    peak: float
    data_range: float


def reference_ranges(items: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> ReferenceRanges:
    """Peak = max of the input over healthy tissue, data range = max − min of recon·brain, both
    over every (image, recon, brain, healthy) of one test set; NaN when there is nothing to take."""
    peak, hi, lo = -np.inf, -np.inf, np.inf
    for image, recon, brain, healthy in items:
        h = np.asarray(healthy, dtype=bool)
        if h.any():
            peak = max(peak, float(np.asarray(image, dtype=np.float64)[h].max()))
        masked = np.asarray(recon, dtype=np.float64) * np.asarray(brain, dtype=bool)
        hi, lo = max(hi, float(masked.max())), min(lo, float(masked.min()))
    return ReferenceRanges(peak if np.isfinite(peak) else float("nan"),
                           hi - lo if np.isfinite(hi) else float("nan"))


def psnr_ref(image: np.ndarray, recon: np.ndarray, healthy: np.ndarray, peak: float) -> float:
    """20·log10(``peak`` / √(MSE over ``healthy``)); NaN without healthy voxels or a positive peak."""
    h = np.asarray(healthy, dtype=bool)
    x = np.asarray(image, dtype=np.float64)
    if not h.any() or not peak > 0:
        return float("nan")
    mse = float(np.mean((x[h] - np.asarray(recon, dtype=np.float64)[h]) ** 2))
    if mse == 0:
        return float("inf")
    return float(20.0 * np.log10(peak / np.sqrt(mse)))


def gaussian_taps(sigma: float = SIGMA) -> np.ndarray:
    """torchmetrics' 1D Gaussian: int(3.5σ + 0.5)·2 + 1 taps (11 for σ = 1.5), summing to 1."""
    size = int(3.5 * sigma + 0.5) * 2 + 1
    d = np.arange((1 - size) / 2, (1 + size) / 2, 1.0)
    g = np.exp(-((d / sigma) ** 2) / 2)
    return g / g.sum()


def _filter(a: np.ndarray, taps: np.ndarray) -> np.ndarray:
    for axis in range(a.ndim):  # reflect padding + valid convolution = scipy's 'mirror' mode
        a = correlate1d(a, taps, axis=axis, mode="mirror")
    return a


def ssim_torchmetrics(preds: np.ndarray, target: np.ndarray, data_range: float | None = None) -> float:
    """SSIM of one 2D image or 3D volume as torchmetrics computes it (see module doc)."""
    p = np.asarray(preds, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"shapes differ: {p.shape} vs {t.shape}")
    if data_range is None:
        data_range = max(p.max() - p.min(), t.max() - t.min())
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    taps = gaussian_taps()
    pad = (taps.size - 1) // 2
    mu_p, mu_t = _filter(p, taps), _filter(t, taps)
    s_pp = _filter(p * p, taps) - mu_p**2
    s_tt = _filter(t * t, taps) - mu_t**2
    s_pt = _filter(p * t, taps) - mu_p * mu_t
    num = (2 * mu_p * mu_t + c1) * (2 * s_pt + c2)
    den = (mu_p**2 + mu_t**2 + c1) * (s_pp + s_tt + c2)
    with np.errstate(invalid="ignore", divide="ignore"):
        smap = num / den
    crop = tuple(slice(pad, -pad) if n > 2 * pad else slice(None) for n in smap.shape)
    return float(smap[crop].mean())


def reference_quality(
    image: np.ndarray, recon: np.ndarray, healthy: np.ndarray, ranges: ReferenceRanges,
    slice_axis: int | None = None,
) -> dict[str, float]:
    """``psnr_ref`` and ``ssim_ref`` of one subject's reconstruction, with its test set's
    ``ranges`` (see module doc)."""
    h = np.asarray(healthy, dtype=bool)
    x = np.asarray(image, dtype=np.float64)
    r = np.asarray(recon, dtype=np.float64)
    if not h.any() or not ranges.data_range > 0:
        return {"psnr_ref": psnr_ref(x, r, h, ranges.peak), "ssim_ref": float("nan")}
    xm, rm = x * h, r * h
    if slice_axis is None:
        ssim = ssim_torchmetrics(rm, xm, ranges.data_range)
    else:
        xs, rs = np.moveaxis(xm, slice_axis, 0), np.moveaxis(rm, slice_axis, 0)
        ssim = float(np.mean([ssim_torchmetrics(rs[k], xs[k], ranges.data_range) for k in range(xs.shape[0])]))
    return {"psnr_ref": psnr_ref(x, r, h, ranges.peak), "ssim_ref": ssim}
