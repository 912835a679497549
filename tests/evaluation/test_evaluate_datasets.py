"""Evaluation per (experiment, test dataset), the per-image oracle, 2D ASSD in mm (issue 10)."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from itermask.evaluation import protocols as P
from itermask.evaluation import reference_metrics as RM
from itermask.evaluation.evaluate import evaluate_experiment
from itermask.evaluation.metrics import assd_mm

SHAPE = (12, 12, 8)


def _condition(folder: Path, err, brain, label=None, mask=None, result=None, affine=None, files=None):
    folder.mkdir(parents=True)
    aff = np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine
    arrays = {"image.nii.gz": np.zeros(err.shape), "recon.nii.gz": np.zeros(err.shape), "error.nii.gz": err,
              "brainmask.nii.gz": brain, "mask.nii.gz": err > 0.5 if mask is None else mask, **(files or {})}
    if label is not None:
        arrays["label.nii.gz"] = label
    for name, a in arrays.items():
        dt = np.float32 if name in ("image.nii.gz", "recon.nii.gz", "error.nii.gz") else np.uint8
        nib.save(nib.Nifti1Image(np.asarray(a, dt), aff), folder / name)
    score = float((err > 0.5).sum())
    (folder / "result.json").write_text(json.dumps({"kind": "3d", "score_name": "mask_size", "score": score,
                                                    "tau": 0.5, **(result or {})}))


def _lesion_subject(rng, scale):
    brain = np.zeros(SHAPE, bool)
    brain[1:11, 1:11, 1:7] = True
    label = np.zeros(SHAPE, bool)
    label[4:7, 4:7, 2:5] = True
    err = np.where(brain, np.where(label, rng.uniform(0.4, 1.0, SHAPE), rng.uniform(0, 0.6, SHAPE)) * scale, 0)
    return err.astype(np.float32), brain, label


def _run(tmp, runs, protocols):
    out = [str(tmp / n) for n in ("s.tsv", "d.tsv", "c.tsv")]
    evaluate_experiment("exp", runs, *out, protocols=protocols, honest_source="healthy_fpr", honest_fpr=0.05, size_bins=[10, 20], pooled_anomalies=[])
    return [pd.read_csv(p, sep="\t") for p in out]


def test_paper_threshold_and_detection_per_test_dataset(tmp_path):
    rng = np.random.default_rng(0)
    runs, vectors = [], {"dsA": [], "dsB": []}
    for ds, scale in (("dsA", 1.0), ("dsB", 5.0)):  # error scales differ: a pooled threshold fits neither
        for i in range(2):
            err, brain, label = _lesion_subject(rng, scale)
            d = tmp_path / f"{ds}{i}"
            _condition(d / "lesion", err, brain, label)
            _condition(d / "healthy", np.where(brain, rng.uniform(0, 0.1 * scale, SHAPE), 0).astype(np.float32), brain,
                       result={"score": 1.0 + i})
            vectors[ds].append((err[brain], label[brain]))
            runs.append((ds, f"s{i}", str(d)))
    seg, det, _ = _run(tmp_path, runs, ["paper"])
    theta = seg[seg["protocol"] == "paper"].groupby("dataset")["threshold"].unique()
    own = {ds: P.paper_threshold([e for e, _ in v], [g for _, g in v])["theta"] for ds, v in vectors.items()}
    pooled = P.paper_threshold([e for v in vectors.values() for e, _ in v], [g for v in vectors.values() for _, g in v])
    for ds in ("dsA", "dsB"):
        assert len(theta[ds]) == 1 and theta[ds][0] == pytest.approx(own[ds], rel=1e-6)
    assert not np.isclose(own["dsA"], pooled["theta"]) or not np.isclose(own["dsB"], pooled["theta"])
    assert set(det["dataset"]) == {"dsA", "dsB"}  # lesion vs healthy within each dataset
    assert (det["n_neg"] == 2).all() and (det["n_pos"] == 2).all()


def test_per_image_best_uses_itermask_oracle_when_present(tmp_path):
    rng = np.random.default_rng(1)
    err, brain, label = _lesion_subject(rng, 1.0)
    oracle = np.zeros(SHAPE, bool)
    oracle[4:7, 4:7, 2:4] = True  # 18 of the 27 lesion voxels: Dice 36/45
    # a: the run's final tau is so high that raising it further finds little: the oracle wins
    _condition(tmp_path / "a" / "lesion", err, brain, label, files={"mask_oracle.nii.gz": oracle},
               result={"oracle": {"tau": 0.7, "iteration": 3}, "tau": 0.97})
    _condition(tmp_path / "b" / "lesion", err, brain, label, mask=np.zeros(SHAPE, bool))
    # c: the same oracle, final tau 0.3: tau raised further at the final iteration does better
    _condition(tmp_path / "c" / "lesion", err, brain, label, files={"mask_oracle.nii.gz": oracle},
               result={"oracle": {"tau": 0.7, "iteration": 3}, "tau": 0.3})
    seg, _, _ = _run(tmp_path, [("ds", s, str(tmp_path / s)) for s in "abc"], ["per_image_best"])
    best = seg[seg["protocol"] == "per_image_best"].set_index("subject")
    assert best.loc["a", "dice"] == pytest.approx(36 / 45) and best.loc["a", "oracle"] == "itermask"
    assert best.loc["a", "threshold"] == pytest.approx(0.7)

    def brute(theta_min):
        return max(2 * np.sum(brain & (err > t) & label) / (np.sum(brain & (err > t)) + label.sum())
                   for t in np.unique(err[brain]) if t >= theta_min)

    assert best.loc["b", "dice"] == pytest.approx(brute(-1)) and best.loc["b", "oracle"] == "error_map"
    assert brute(0.3) > 36 / 45
    assert best.loc["c", "dice"] == pytest.approx(brute(0.3)) and best.loc["c", "oracle"] == "itermask_final"
    assert best.loc["c", "threshold"] >= 0.3


def test_2d_assd_in_mm_from_header_spacing_and_empty_precision(tmp_path):
    h = 16
    brain = np.zeros((h, h, 2), bool)
    brain[2:14, 2:14] = True
    label = np.zeros_like(brain)
    label[5:9, 5:9] = True
    pred = np.zeros_like(brain)
    pred[6:10, 5:9] = True  # shifted by one pixel
    err = np.where(label, 1.0, 0.1).astype(np.float32) * brain
    affine = np.diag([1.875, 1.875, 1.0, 1.0])  # 240 mm over 128 px (the reference's 2D field)
    _condition(tmp_path / "a" / "lesion", err, brain, label, mask=pred, affine=affine, result={"kind": "2d"})
    empty = np.zeros_like(brain)
    _condition(tmp_path / "b" / "lesion", err, brain, label, mask=empty, affine=affine, result={"kind": "2d"})
    seg, _, _ = _run(tmp_path, [("ds", "a", str(tmp_path / "a")), ("ds", "b", str(tmp_path / "b"))], ["paper"])
    it = seg[seg["protocol"] == "iterative_mask"].set_index("subject")
    pixels = assd_mm(pred, label, [1.0, 1.0, 1.0], slice_axis=2)
    assert pixels > 0 and it.loc["a", "assd_mm"] == pytest.approx(1.875 * pixels)
    assert np.isnan(it.loc["b", "precision"]) and it.loc["b", "precision_ref"] == 1.0
    assert np.isnan(it.loc["b", "assd_mm"])


def test_itermask2_raised_tau_oracle_stays_inside_its_final_mask(tmp_path):
    """IterMask2 only shrinks (M_{k+1} = M_k & [e > tau]): raising tau at the final iteration
    can only keep voxels of M; lesion voxels outside M still count as missed."""
    rng = np.random.default_rng(2)
    err, brain, label = _lesion_subject(rng, 1.0)
    final = np.zeros(SHAPE, bool)
    final[4:7, 4:7, 2:3] = True  # the final mask holds one lesion plane of three
    oracle = np.zeros(SHAPE, bool)
    oracle[4:5, 4:7, 2:3] = True
    _condition(tmp_path / "d" / "lesion", err, brain, label, mask=final, files={"mask_oracle.nii.gz": oracle},
               result={"kind": "2d", "oracle": {"tau": 0.7, "iteration": 1}, "tau": 0.0})
    seg, _, _ = _run(tmp_path, [("ds", "d", str(tmp_path / "d"))], ["per_image_best"])
    best = seg[seg["protocol"] == "per_image_best"].iloc[0]
    inside = max(2 * np.sum(final & (err > t) & label) / (np.sum(final & (err > t)) + label.sum())
                 for t in [-1.0, *np.unique(err[final])])
    assert best["oracle"] == "itermask_final" and best["dice"] == pytest.approx(inside)
    assert inside <= 2 * 9 / (9 + 27) + 1e-9  # at most the 9 lesion voxels of M against all 27


def test_a_left_out_lesion_subject_is_one_left_out_row_with_its_reason(tmp_path):
    """A lesion subject without a result (IterMask2: no lesion in its slice range) is one row of
    protocol left_out, no metrics, the reason as threshold_source; nothing else is written for it."""
    folder = tmp_path / "sub-s1" / "lesion"
    folder.mkdir(parents=True)
    reason = "no lesion in the central axial range 22-27 of 48 slices used for training"
    (folder / "result.json").write_text(json.dumps({"kind": "2d", "condition": "lesion", "left_out_reason": reason}))
    seg = tmp_path / "seg.tsv"
    evaluate_experiment("e", [("ds", "s1", str(tmp_path / "sub-s1"))], str(seg), str(tmp_path / "det.tsv"),
                        str(tmp_path / "scores.tsv"), protocols=["paper"], honest_source="healthy_fpr",
                        honest_fpr=0.01, size_bins=[200, 800], pooled_anomalies=[])
    df = pd.read_csv(seg, sep="\t")
    assert df[["dataset", "subject", "protocol", "threshold_source"]].values.tolist() == [["ds", "s1", "left_out", reason]]
    assert df["dice"].isna().all()


def test_reference_psnr_and_ssim_take_their_constants_per_test_dataset(tmp_path):
    """psnr_ref's peak is the input's healthy-tissue maximum over the subjects of one test
    dataset, ssim_ref's data range that of recon·brain over them (not per subject, not pooled)."""
    rng = np.random.default_rng(3)
    runs, arrays = [], {}
    for ds, scale in (("dsA", 1.0), ("dsB", 4.0)):
        for i in range(2):
            err, brain, label = _lesion_subject(rng, 1.0)
            image = np.where(brain, rng.uniform(0, scale * (1 + i), SHAPE), 0).astype(np.float32)
            recon = (image + np.where(brain, rng.normal(0, 0.2, SHAPE), 0)).astype(np.float32)
            d = tmp_path / f"{ds}{i}"
            _condition(d / "lesion", err, brain, label, files={"image.nii.gz": image, "recon.nii.gz": recon})
            arrays[(ds, f"s{i}")] = (image, recon, brain, brain & ~label)
            runs.append((ds, f"s{i}", str(d)))
    seg, _, _ = _run(tmp_path, runs, ["paper"])
    seg = seg[seg["protocol"] == "paper"].set_index(["dataset", "subject"])
    for ds in ("dsA", "dsB"):
        own = [arrays[(ds, s)] for s in ("s0", "s1")]
        peak = max(float(x[h].max()) for x, _, _, h in own)
        hi = max(float((r * b).max()) for _, r, b, _ in own)
        lo = min(float((r * b).min()) for _, r, b, _ in own)
        for s, (x, r, b, h) in zip(("s0", "s1"), own):
            mse = float(np.mean((x[h].astype(float) - r[h]) ** 2))
            assert seg.loc[(ds, s), "psnr_ref"] == pytest.approx(20 * np.log10(peak / np.sqrt(mse)), rel=1e-5)
            want = RM.ssim_torchmetrics(r * h, x * h, data_range=hi - lo)
            assert seg.loc[(ds, s), "ssim_ref"] == pytest.approx(want, rel=1e-5)
