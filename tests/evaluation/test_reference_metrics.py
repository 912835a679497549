"""The reference's metric definitions (METHOD.md §8) against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from itermask.evaluation import reference_metrics as RM


def test_gaussian_taps_are_torchmetrics_window():
    g = RM.gaussian_taps(1.5)
    assert g.size == 11 and g.sum() == pytest.approx(1.0)
    raw = np.exp(-((np.arange(-5, 6) / 1.5) ** 2) / 2)
    np.testing.assert_allclose(g, raw / raw.sum())


def test_ssim_constant_images_hand_value():
    # constant images: sigma terms 0, SSIM = (2ab + c1) / (a² + b² + c1) with c1 = (0.01 L)²
    a, b, L = 1.0, 2.0, 1.0
    c1 = (0.01 * L) ** 2
    got = RM.ssim_torchmetrics(np.full((20, 20), a), np.full((20, 20), b), data_range=L)
    assert got == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))


def _ssim_bruteforce(p, t, data_range):
    """Explicit 2D window sums over a reflect-padded image, map cropped by 5 (torchmetrics)."""
    g = RM.gaussian_taps()
    w = np.outer(g, g)
    pp, tp = np.pad(p, 5, mode="reflect"), np.pad(t, 5, mode="reflect")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(5, p.shape[0] - 5):
        for j in range(5, p.shape[1] - 5):
            wp, wt = pp[i:i + 11, j:j + 11], tp[i:i + 11, j:j + 11]
            mp, mt = (w * wp).sum(), (w * wt).sum()
            vp = (w * wp * wp).sum() - mp**2
            vt = (w * wt * wt).sum() - mt**2
            cv = (w * wp * wt).sum() - mp * mt
            vals.append((2 * mp * mt + c1) * (2 * cv + c2) / ((mp**2 + mt**2 + c1) * (vp + vt + c2)))
    return float(np.mean(vals))


def test_ssim_matches_explicit_windows_and_default_range():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(18, 21))
    p = t + rng.normal(0, 0.5, t.shape)
    rng_default = max(np.ptp(p), np.ptp(t))
    assert RM.ssim_torchmetrics(p, t) == pytest.approx(_ssim_bruteforce(p, t, rng_default), rel=1e-10)
    assert RM.ssim_torchmetrics(t, t) == pytest.approx(1.0)


def test_reference_ranges_are_test_set_wide():
    # peak: the input's max on healthy tissue over all subjects, a brighter lesion or background
    # voxel does not count (IterMask3D test.py); data range: recon·brain over all subjects,
    # zeros outside the brain included (IterMask2 test.py)
    x1, x2 = np.zeros((4, 4)), np.zeros((4, 4))
    x1[0, 0] = 50.0  # outside healthy tissue (lesion)
    x1[2, 2], x2[3, 3] = 3.0, 7.0
    brain = np.zeros((4, 4), bool)
    brain[1:, 1:] = True
    healthy = brain.copy()
    healthy[1, 1] = False
    r1, r2 = np.full((4, 4), 9.0), np.full((4, 4), -2.0)
    r1[brain] = 1.5
    r2[brain] = np.linspace(-1.0, 4.0, brain.sum())
    ranges = RM.reference_ranges([(x1, r1, brain, healthy), (x2, r2, brain, healthy)])
    assert ranges.peak == 7.0
    assert ranges.data_range == pytest.approx(4.0 - (-1.0))


def test_psnr_ref_uses_the_given_peak():
    x = np.zeros((4, 4))
    healthy = np.zeros_like(x, bool)
    healthy[2:, 2:] = True
    recon = x.copy()
    recon[healthy] += 0.5  # MSE 0.25 on healthy tissue
    assert RM.psnr_ref(x, recon, healthy, 10.0) == pytest.approx(20 * np.log10(10.0 / 0.5))
    assert np.isnan(RM.psnr_ref(x, recon, healthy, 0.0))


def test_precision_ref_empty_prediction_is_one():
    g = np.zeros((5, 5), bool)
    g[1, 1] = True
    assert RM.precision_ref(np.zeros_like(g), g) == 1.0
    p = np.zeros_like(g)
    p[1, 1] = p[2, 2] = True
    assert RM.precision_ref(p, g) == 0.5


def test_reference_quality_2d_stack_is_slice_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 16, 2))
    r = x + rng.normal(0, 0.3, x.shape)
    h = np.ones(x.shape, bool)
    h[:3] = False
    ranges = RM.ReferenceRanges(peak=2.0, data_range=5.0)
    q = RM.reference_quality(x, r, h, ranges, slice_axis=2)
    per = [_ssim_bruteforce((r * h)[..., k], (x * h)[..., k], 5.0) for k in range(2)]
    assert q["ssim_ref"] == pytest.approx(np.mean(per), rel=1e-10)
    mse = np.mean((x[h] - r[h]) ** 2)
    assert q["psnr_ref"] == pytest.approx(20 * np.log10(2.0 / np.sqrt(mse)))
