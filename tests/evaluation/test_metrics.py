"""Metrics against independent hand/brute-force computations."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial import cKDTree

from itermask.evaluation import metrics as M


def _surface_points(mask: np.ndarray, spacing) -> np.ndarray:
    """Voxels of the mask with a face neighbour outside it (outside the array counts as outside)."""
    m = np.pad(mask, 1)
    inner = m.copy()
    for ax in range(mask.ndim):
        for shift in (1, -1):
            inner &= np.roll(m, shift, axis=ax)
    surf = (m & ~inner)[tuple(slice(1, -1) for _ in range(mask.ndim))]
    return np.argwhere(surf) * np.asarray(spacing, float)


def _assd_bruteforce(a, b, spacing):
    pa, pb = _surface_points(a, spacing), _surface_points(b, spacing)
    da, _ = cKDTree(pb).query(pa)
    db, _ = cKDTree(pa).query(pb)
    return (da.sum() + db.sum()) / (len(da) + len(db))


def test_overlap_on_hand_built_masks():
    p = np.zeros((4, 4), bool)
    g = np.zeros((4, 4), bool)
    p[0, :3] = True          # 3 voxels
    g[0, 1:] = True          # 3 voxels; overlap 2
    g[1, 0] = True           # 4 voxels
    m = M.overlap_metrics(p, g)
    assert m["dice"] == pytest.approx(2 * 2 / 7)
    assert m["jaccard"] == pytest.approx(2 / 5)
    assert m["sensitivity"] == pytest.approx(2 / 4)
    assert m["precision"] == pytest.approx(2 / 3)
    empty = M.overlap_metrics(np.zeros((3, 3)), np.zeros((3, 3)))
    assert all(np.isnan(v) for v in empty.values())
    assert M.overlap_metrics(np.zeros((3, 3)), np.eye(3))["dice"] == 0.0


def test_assd_shifted_cubes_analytic_and_bruteforce():
    a = np.zeros((20, 20, 20), bool)
    b = np.zeros_like(a)
    a[5:11, 5:11, 5:11] = True
    b[7:13, 5:11, 5:11] = True   # shifted by 2 voxels along axis 0
    spacing = (1.5, 1.0, 2.0)
    brute = _assd_bruteforce(a, b, spacing)
    assert M.assd_mm(a, b, spacing) == pytest.approx(brute, rel=1e-6)
    # identical masks: 0; empty: NaN
    assert M.assd_mm(a, a, spacing) == 0.0
    assert np.isnan(M.assd_mm(a, np.zeros_like(a), spacing))
    # a pure shift of a 1-voxel-thick plate: every surface voxel is exactly d mm from the other
    p = np.zeros((10, 10, 10), bool)
    q = np.zeros_like(p)
    p[2, 2:8, 2:8] = True
    q[5, 2:8, 2:8] = True
    assert M.assd_mm(p, q, (2.0, 1.0, 1.0)) == pytest.approx(6.0)


def test_assd_random_masks_match_bruteforce():
    rng = np.random.default_rng(0)
    for _ in range(3):
        a = rng.random((12, 11, 10)) > 0.8
        b = rng.random((12, 11, 10)) > 0.7
        sp = tuple(rng.uniform(0.5, 2.0, 3))
        assert M.assd_mm(a, b, sp) == pytest.approx(_assd_bruteforce(a, b, sp), rel=1e-6)


def test_assd_per_slice_for_2d_stacks():
    rng = np.random.default_rng(1)
    a = rng.random((15, 14, 2)) > 0.7
    b = rng.random((15, 14, 2)) > 0.6
    sp = (1.2, 0.8, 5.0)
    pts = []
    for k in range(2):
        pa, pb = _surface_points(a[..., k], sp[:2]), _surface_points(b[..., k], sp[:2])
        pts += [cKDTree(pb).query(pa)[0], cKDTree(pa).query(pb)[0]]
    expected = np.concatenate(pts).mean()
    assert M.assd_mm(a, b, sp, slice_axis=2) == pytest.approx(expected, rel=1e-6)


def test_voxel_auroc_inside_brain_equals_pair_count():
    rng = np.random.default_rng(2)
    err = rng.random((8, 8, 4))
    label = rng.random((8, 8, 4)) > 0.8
    brain = np.zeros_like(label)
    brain[1:7, 1:7] = True
    err[~brain] = 100.0  # background must not count
    pos, neg = err[brain & label], err[brain & ~label]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert M.voxel_auroc(err, label, brain) == pytest.approx(pairs)


def test_detection_metrics_hand_built():
    # 10 normal scores 0..9, 5 anomalous scores
    neg = np.arange(10, dtype=float)
    pos = np.array([3.5, 7.5, 8.5, 10, 11])
    y = np.r_[np.zeros(10), np.ones(5)]
    s = np.r_[neg, pos]
    d = M.detection_metrics(y, s)
    # AUROC by brute-force pair count
    assert d["auroc"] == pytest.approx((pos[:, None] > neg[None, :]).mean())
    # TPR >= 0.8 needs 4 of 5 positives: threshold 7.5 -> normals >= 7.5 are 8, 9 -> FPR 0.2
    assert d["fpr80"] == pytest.approx(0.2)
    # TPR >= 0.9 needs all 5: threshold 3.5 -> normals 4..9 -> FPR 0.6
    assert d["fpr90"] == pytest.approx(0.6)
    # TNR >= 0.8: at most 2 normals at/above t; smallest such score t = 7.5 (normals 8, 9 above);
    # positives below 7.5: only 3.5
    assert d["fnr80"] == pytest.approx(1 / 5)
    # TNR >= 0.9: at most 1 normal at/above t -> t = 8.5; positives below: 3.5, 7.5
    assert d["fnr90"] == pytest.approx(2 / 5)
    # AUPRC = average precision by hand: ranks of positives among descending scores
    order = np.argsort(-s, kind="stable")
    hits = y[order] == 1
    prec = np.cumsum(hits) / np.arange(1, 16)
    assert d["auprc"] == pytest.approx(prec[hits].mean())
    assert all(np.isnan(v) for v in M.detection_metrics([0, 0], [1.0, 2.0]).values())


def test_detection_metrics_ties_at_the_operating_point_count_against_the_method():
    """Normal and anomalous scores tied at the threshold: fpr/fnr count the tied normals as positives."""
    neg = np.array([0.0, 0.0, 1.0, 2.0, 3.0])
    pos = np.array([0.0, 3.0, 4.0])
    y = np.r_[np.zeros(5), np.ones(3)]
    s = np.r_[neg, pos]
    # Operating points "score >= t" (a threshold takes every tied score or none):
    #   t=4: TPR 1/3, FPR 0/5 | t=3: TPR 2/3, FPR 1/5 | t=2: 2/3, 2/5 | t=1: 2/3, 3/5 | t=0: 3/3, 5/5
    # fpr80 / fpr90: TPR >= 0.8 needs all 3 anomalous scans -> t = 0, which also takes all 5 normals
    #   -> FPR 1.0 (breaking the tie at 0 in favour of the anomalous scan would give t = 0+: FPR 3/5)
    # FPR at TPR >= 2/3: t = 3 takes the normal 3 as well -> FPR 1/5 (tie broken for anomalous: 0)
    # fnr80: TNR >= 0.8 allows 1 normal at/above t -> t = 3 (normal 3 only); anomalous below 3: {0} -> 1/3
    # fnr90: TNR >= 0.9 allows no normal at/above t -> t = 4; anomalous below 4: {0, 3} -> 2/3
    #   (tie broken for anomalous: t = 3+ keeps the anomalous 3 -> 1/3)
    d = M.detection_metrics(y, s)
    assert d["fpr80"] == pytest.approx(1.0)
    assert d["fpr90"] == pytest.approx(1.0)
    assert d["fnr80"] == pytest.approx(1 / 3)
    assert d["fnr90"] == pytest.approx(2 / 3)
    assert M.fpr_at_tpr(y, s, 2 / 3) == pytest.approx(0.2)
    assert M.fnr_at_tnr(y, s, 1.0) == pytest.approx(2 / 3)


def test_psnr_known_value_and_ssim_identity():
    x = np.zeros((16, 16, 12))
    x[2:14, 2:14, 2:10] = np.linspace(0, 4, 12)[:, None, None]  # brain intensities 0..4
    brain = np.zeros(x.shape, bool)
    brain[2:14, 2:14, 2:10] = True
    lesion = np.zeros_like(brain)
    lesion[5:7, 5:7, 5:7] = True
    recon = x.copy()
    recon[brain] += 0.1            # constant error 0.1 on healthy tissue -> MSE 0.01
    recon[lesion] = 50.0           # lesion voxels are excluded
    q = M.healthy_tissue_quality(x, recon, brain, lesion)
    assert q["psnr"] == pytest.approx(10 * np.log10(4.0**2 / 0.01))
    same = M.healthy_tissue_quality(x, x, brain, lesion)
    assert same["ssim"] == pytest.approx(1.0) and same["psnr"] == np.inf
    assert q["ssim"] < 1.0


def test_size_class_bins():
    assert [M.size_class(n, (200, 800)) for n in (0, 1, 199, 200, 800, 801)] == [
        "none", "small", "small", "medium", "medium", "large"]


def test_segmentation_metrics_bundle():
    g = np.zeros((10, 10, 10), bool)
    g[3:6, 3:6, 3:6] = True
    err = g.astype(float) + 0.1
    m = M.segmentation_metrics(g, g, error=err, brain=np.ones_like(g), spacing=(1, 1, 1), size_bins=(200, 800))
    assert m["dice"] == 1.0 and m["assd_mm"] == 0.0 and m["auroc_voxel"] == 1.0
    assert m["lesion_voxels"] == 27 and m["size_class"] == "small"
    assert set(itertools.chain(M.SEGMENTATION_METRICS[:6])) <= set(m)


def test_surface_distances_equal_monais():
    """The SciPy surface distances (no torch import in evaluation jobs) are MONAI's."""
    import warnings

    import torch
    from monai.metrics.utils import get_edge_surface_distance
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    for shape, spacing in (((20, 18, 16), [1.0, 2.0, 2.5]), ((30, 25), [1.5, 0.5])):
        a = ndi.gaussian_filter(rng.random(shape), 2) > 0.5
        b = ndi.gaussian_filter(rng.random(shape), 2) > 0.52
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, d, _ = get_edge_surface_distance(torch.as_tensor(a), torch.as_tensor(b), distance_metric="euclidean",
                                                spacing=spacing, symmetric=True)
        ref = torch.cat([x.reshape(-1) for x in d]).double().numpy()
        np.testing.assert_allclose(np.sort(M._surface_distances(a, b, spacing)), np.sort(ref))
