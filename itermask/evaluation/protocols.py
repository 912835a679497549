"""Thresholding protocols that turn error maps into final segmentations (METHOD.md §7).

The error map E (squared reconstruction error) is only read inside the brain; the prediction
of a protocol with threshold θ is ``brain ∧ (E > θ)`` (strict). Every threshold is reported in
raw error units, so protocols are comparable.

- ``honest`` (default): θ fixed without test data, from one of two sources
  (``evaluation.honest_source``): ``healthy_fpr``, the (1 − fpr) quantile (NumPy linear
  interpolation) of the errors of all brain voxels of the healthy *validation* scans, pooled; or
  ``labelled_val``, the ``paper`` protocol's search below run on a labelled validation split
  (lesion subjects outside the test set) instead of the test set.
- ``paper``: E is min-max normalised over the brain voxels of the whole test set (all test
  subjects pooled); one θ maximising the mean Dice over the test subjects (test labels!) is
  chosen from a candidate grid: 101 evenly spaced normalised values in [0, 1] plus the pooled
  normalised errors' quantiles at 101 levels 1 − 10^(−5 … 0) (dense in the upper tail, where
  lesion thresholds lie). Optimistic: it is what the reference does.
- ``per_image_best``: for each image the θ with the highest Dice, searched exactly over every
  distinct error value of that image (the papers' human-in-the-loop rows).
- ``iterative_mask``: IterMask's own final iterative mask (``mask.nii.gz``), no thresholding of
  E; reported for completeness.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

PROTOCOLS = ("honest", "paper", "per_image_best", "iterative_mask")


def binarise(error: np.ndarray, brain: np.ndarray, theta: float) -> np.ndarray:
    """Prediction of a threshold: brain voxels with error strictly above ``theta``."""
    return np.asarray(brain, dtype=bool) & (np.asarray(error) > theta)


def dice_curve(errors: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Dice of ``errors > t`` against ``labels`` for every t (1D brain-voxel vectors).

    Vectorised with sorted arrays and ``searchsorted``; NaN where prediction and label are
    both empty.
    """
    e = np.sort(np.asarray(errors, dtype=np.float64).ravel())
    g = np.asarray(labels, dtype=bool).ravel()
    e_les = np.sort(np.asarray(errors, dtype=np.float64).ravel()[g])
    t = np.asarray(thresholds, dtype=np.float64)
    n_pred = e.size - np.searchsorted(e, t, side="right")
    tp = e_les.size - np.searchsorted(e_les, t, side="right")
    den = n_pred + e_les.size
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2.0 * tp / np.maximum(den, 1), np.nan)


def honest_threshold(val_errors: Sequence[np.ndarray], fpr: float) -> float:
    """(1 − fpr) quantile of the pooled healthy validation brain-voxel errors."""
    if not 0.0 < float(fpr) < 1.0:
        raise ValueError(f"honest_fpr must lie in (0, 1), got {fpr}")
    pooled = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in val_errors]) if len(val_errors) else np.array([])
    if pooled.size == 0:
        raise ValueError("no healthy validation voxels to set the honest threshold")
    return float(np.quantile(pooled, 1.0 - float(fpr)))


def labelled_threshold(errors: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> float:
    """Honest θ from a labelled validation split: the raw θ of best mean Dice over its subjects
    (brain-voxel vectors), searched as `paper_threshold` searches the test set."""
    if len(errors) == 0:
        raise ValueError("no labelled validation subjects to set the honest threshold")
    return paper_threshold(errors, labels)["theta"]


def paper_candidates(pooled_normalised: np.ndarray, n: int = 101) -> np.ndarray:
    """Candidate normalised thresholds of the ``paper`` protocol (see module doc)."""
    levels = 1.0 - np.logspace(-5, 0, n)
    quantiles = np.quantile(np.asarray(pooled_normalised, dtype=np.float64), np.clip(levels, 0, 1))
    return np.unique(np.concatenate([np.linspace(0.0, 1.0, n), quantiles]))


def paper_threshold(
    errors: Sequence[np.ndarray], labels: Sequence[np.ndarray], n: int = 101, max_pool: int = 5_000_000
) -> dict[str, float]:
    """Best-mean-Dice threshold over the test set after pooled min-max normalisation.

    ``errors``/``labels``: per subject, brain-voxel vectors. Returns raw and normalised θ, the
    normalisation range and the mean Dice reached. Candidate quantiles use an evenly strided
    subsample of at most ``max_pool`` pooled voxels (the Dice search itself uses every voxel).
    """
    if len(errors) == 0:
        raise ValueError("no test subjects for the paper protocol")
    lo = float(min(np.min(e) for e in errors))
    hi = float(max(np.max(e) for e in errors))
    scale = hi - lo if hi > lo else 1.0
    pooled = np.concatenate([np.asarray(e, dtype=np.float32).ravel() for e in errors])
    if pooled.size > max_pool:
        pooled = pooled[:: int(np.ceil(pooled.size / max_pool))]
    cand = paper_candidates((pooled - lo) / scale, n)
    curves = np.stack([dice_curve((np.asarray(e, np.float64) - lo) / scale, g, cand) for e, g in zip(errors, labels)])
    valid = ~np.all(np.isnan(curves), axis=0)
    if not valid.any():
        raise ValueError("Dice is undefined for every candidate (no lesion voxels in the test set)")
    mean = np.full(cand.shape, -np.inf)
    mean[valid] = np.nanmean(curves[:, valid], axis=0)
    best = int(np.argmax(mean))
    return {"theta": lo + float(cand[best]) * scale, "theta_normalised": float(cand[best]),
            "min": lo, "max": hi, "mean_dice": float(mean[best])}


def per_image_best_threshold(errors: np.ndarray, labels: np.ndarray, theta_min: float | None = None
                             ) -> dict[str, float]:
    """Exact best-Dice threshold of one image (brain-voxel vectors of error and label); with
    ``theta_min`` only thresholds >= it (masks inside ``errors > theta_min``)."""
    e = np.asarray(errors, dtype=np.float64).ravel()
    g = np.asarray(labels, dtype=bool).ravel()
    if e.size == 0:
        raise ValueError("empty brain")
    n_g = int(g.sum())
    if n_g == 0:  # nothing to find: predicting nothing is best; Dice undefined
        return {"theta": float(e.max()), "dice": float("nan")}
    order = np.argsort(-e, kind="stable")
    es, gs = e[order], g[order]
    k = np.arange(1, e.size + 1)
    dice = 2.0 * np.cumsum(gs) / (k + n_g)
    boundary = np.append(es[1:] < es[:-1], True)  # top-k sets reachable by a threshold
    if theta_min is not None:
        boundary &= es > theta_min
    dice = np.where(boundary, dice, -np.inf)
    if not np.isfinite(dice).any():  # no voxel above theta_min: the empty mask
        return {"theta": float(max(theta_min, e.max())), "dice": 0.0}
    best = int(np.argmax(dice))
    theta = float(es[best + 1]) if best + 1 < e.size else float(np.nextafter(es[-1], -np.inf))
    return {"theta": theta, "dice": float(dice[best])}
