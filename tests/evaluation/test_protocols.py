"""Thresholding protocols and the evaluation stage on a synthetic inference folder."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from itermask.errors import InputError
from itermask.evaluation import protocols as P
from itermask.evaluation.evaluate import evaluate_experiment
from itermask.evaluation.figures import make_figures, primary_protocol, sensitivity_figure, sensitivity_stage


def _dice(pred, g):
    return 2 * np.sum(pred & g) / (pred.sum() + g.sum())


def test_honest_threshold_is_hand_quantile():
    rng = np.random.default_rng(0)
    val = [rng.random(37), rng.random(64)]
    pooled = np.sort(np.concatenate(val))
    pos = (pooled.size - 1) * (1 - 0.05)  # linear interpolation between order statistics
    lo = int(np.floor(pos))
    hand = pooled[lo] + (pos - lo) * (pooled[lo + 1] - pooled[lo])
    assert P.honest_threshold(val, 0.05) == pytest.approx(hand)
    with pytest.raises(ValueError, match="no healthy validation voxels to set the honest threshold"):
        P.honest_threshold([], 0.05)


def test_dice_curve_matches_direct_masks():
    rng = np.random.default_rng(1)
    e = rng.random(500)
    g = rng.random(500) > 0.8
    ts = np.array([-1.0, 0.1, 0.5, 0.93, 2.0])
    expected = [(_dice(e > t, g) if (e > t).sum() + g.sum() else np.nan) for t in ts]
    np.testing.assert_allclose(P.dice_curve(e, g, ts), expected)


def test_per_image_best_is_exact():
    rng = np.random.default_rng(2)
    e = np.round(rng.random(300), 2)  # ties on purpose
    g = (e + rng.normal(0, 0.2, 300)) > 0.8
    best = max(_dice(e > t, g) for t in np.r_[np.unique(e), -1.0])
    r = P.per_image_best_threshold(e, g)
    assert r["dice"] == pytest.approx(best)
    assert _dice(e > r["theta"], g) == pytest.approx(best)


def test_per_image_best_above_a_minimum_threshold():
    rng = np.random.default_rng(4)
    e = np.round(rng.random(300), 2)
    g = (e + rng.normal(0, 0.2, 300)) > 0.6
    for lo in (0.3, 0.75, 0.9):
        best = max(_dice(e > t, g) for t in np.unique(e) if t >= lo)
        r = P.per_image_best_threshold(e, g, theta_min=lo)
        assert r["dice"] == pytest.approx(best) and r["theta"] >= lo
        assert _dice(e > r["theta"], g) == pytest.approx(best)
    assert P.per_image_best_threshold(e, g, theta_min=5.0)["dice"] == 0.0  # nothing above it


def test_paper_threshold_maximises_mean_dice():
    rng = np.random.default_rng(3)
    errors, labels = [], []
    for scale in (1.0, 3.0):  # raw error scales differ; pooled min-max is shared
        g = rng.random(400) > 0.85
        e = np.where(g, rng.uniform(0.5, 1.0, 400), rng.uniform(0.0, 0.6, 400)) * scale
        errors.append(e)
        labels.append(g)
    r = P.paper_threshold(errors, labels)
    lo = min(e.min() for e in errors)
    hi = max(e.max() for e in errors)
    cand = P.paper_candidates(np.concatenate([(e - lo) / (hi - lo) for e in errors]))
    brute = max(np.mean([_dice(e > lo + c * (hi - lo), g) for e, g in zip(errors, labels)]) for c in cand)
    assert r["mean_dice"] == pytest.approx(brute)
    assert np.mean([_dice(e > r["theta"], g) for e, g in zip(errors, labels)]) == pytest.approx(brute)
    # one shared threshold cannot fit both scales; each image's own threshold does far better
    # (0.88 against 0.64 here)
    per_image = np.mean([P.per_image_best_threshold(e, g)["dice"] for e, g in zip(errors, labels)])
    assert per_image > r["mean_dice"] + 0.15


def test_paper_candidates_reach_the_upper_tail():
    """Only the dense upper-tail quantiles solve this: 10^5 normal voxels with errors evenly in
    [0, 0.99995] and 5 lesion voxels in [0.99996, 1] (range [0, 1], so normalised = raw). The even
    grid's 0.99 and 1.0 miss the gap; of the levels 1 - 10^(-5 + 0.05 k) only k = 13 lands in it:
    position (N - 1) * (1 - 10^-4.35) = 99999.53... lies between the largest normal error
    (sorted index 99999) and the smallest lesion error, so θ interpolates linearly between them."""
    normal = np.linspace(0.0, 0.99995, 100_000)
    lesion = np.linspace(0.99996, 1.0, 5)
    e = np.r_[normal, lesion]
    g = np.r_[np.zeros(normal.size, bool), np.ones(lesion.size, bool)]
    r = P.paper_threshold([e], [g])
    assert r["mean_dice"] == 1.0 and r["min"] == 0.0 and r["max"] == 1.0
    assert normal.max() <= r["theta"] < lesion.min()
    pos = (e.size - 1) * (1 - 10**-4.35)
    frac = pos - np.floor(pos)
    assert np.floor(pos) == normal.size - 1 and 0 < frac < 1
    hand = normal[-1] + frac * (lesion[0] - normal[-1])
    assert r["theta"] == pytest.approx(hand, abs=2e-7)  # the pooled errors are float32
    assert _dice(e > r["theta"], g) == 1.0


def test_paper_threshold_subsamples_the_candidate_pool():
    """``max_pool``: candidate quantiles come from every ceil(size / max_pool)-th pooled voxel.
    Errors 0..9, the lesion is the voxel at 9; with n = 2 the candidates are the normalised 0 and 1
    and the pool's quantile at level 1 - 1e-5 (linear interpolation), computed by hand:
    - no subsampling (max_pool >= 10): pool 0..9, position 9 (1 - 1e-5) -> 8 + 0.99991 = 8.99991:
      only the lesion voxel is above it, Dice 1;
    - max_pool 5, stride 2: pool 0, 2, 4, 6, 8, position 4 (1 - 1e-5) -> 6 + 2 * 0.99996 = 7.99992:
      voxels 8 and 9 above it, Dice 2/3 (θ = 0: Dice 2/10; θ = 9: nothing predicted, Dice 0);
    - max_pool 4, stride 3 (not 2, which would leave 5 > 4 voxels): pool 0, 3, 6, 9, position
      3 (1 - 1e-5) -> 6 + 3 * 0.99997 = 8.99991, Dice 1."""
    e = np.arange(10, dtype=float)
    g = e == 9
    for max_pool, theta, dice in ((10, 8.99991, 1.0), (5, 7.99992, 2 / 3), (4, 8.99991, 1.0)):
        r = P.paper_threshold([e], [g], n=2, max_pool=max_pool)
        assert r["theta"] == pytest.approx(theta, abs=1e-6), max_pool
        assert r["mean_dice"] == pytest.approx(dice), max_pool
        assert _dice(e > r["theta"], g) == pytest.approx(dice)


def test_labelled_threshold_separates_validation_lesions():
    """Honest θ from a labelled validation split: lesion errors 2-3, normal tissue 0-1 on both
    validation subjects -> a θ in between (mean Dice 1), the paper search run on them."""
    rng = np.random.default_rng(6)
    errors, labels = [], []
    for n in (300, 500):
        g = rng.random(n) > 0.9
        errors.append(np.where(g, rng.uniform(2.0, 3.0, n), rng.uniform(0.0, 1.0, n)))
        labels.append(g)
    theta = P.labelled_threshold(errors, labels)
    assert 1.0 <= theta < 2.0
    assert all(_dice(e > theta, g) == 1.0 for e, g in zip(errors, labels))
    normal = np.concatenate([e[~g] for e, g in zip(errors, labels)])
    lesion = np.concatenate([e[g] for e, g in zip(errors, labels)])
    assert normal.max() <= theta < lesion.min()  # θ separates the pooled validation voxels
    # by hand: errors 0 and 1 (normal), 3 (lesion) on two subjects; pooled min-max range [0, 3].
    # Every θ in [1, 3) gives Dice 1 on both ('>' is strict) and the lowest candidate reaching it
    # is the pooled normalised error 1/3 itself (a quantile of the tied ones), i.e. raw θ = 1: the
    # largest normal error, in raw units (not the normalised 1/3), not a θ higher in the gap
    e = np.array([0, 0, 0, 0, 1, 1, 1, 1, 3, 3], float)
    theta = P.labelled_threshold([e, e.copy()], [e == 3, e == 3])
    assert theta == pytest.approx(1.0, abs=1e-6) and theta >= 1.0
    with pytest.raises(ValueError, match="no labelled validation subjects"):
        P.labelled_threshold([], [])


# ----------------------------------------------------------------------------- stage fixture
SHAPE = (16, 16, 12)


def _write_condition(folder: Path, x, recon, brain, label=None, score=None, extra=None):
    folder.mkdir(parents=True)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    save = lambda a, n, dt: nib.save(nib.Nifti1Image(np.asarray(a, dt), aff), folder / n)  # noqa: E731
    err = np.where(brain, (x - recon) ** 2, 0)
    save(x, "image.nii.gz", np.float32)
    save(recon, "recon.nii.gz", np.float32)
    save(err, "error.nii.gz", np.float32)
    save(brain, "brainmask.nii.gz", np.uint8)
    save(err > 0.5, "mask.nii.gz", np.uint8)
    if label is not None:
        save(label, "label.nii.gz", np.uint8)
    score = score or {"mask_size": float((err > 0.5).sum()), "mean_error": float(err[brain].mean())}
    # the layout itermask.inference.stage writes
    result = {"kind": "3d", "score_name": "mask_size", "score": score["mask_size"],
              "scores": {"mask_size_fraction": score["mask_size"], "mask_size_voxels": 7, "brain_voxels": 99,
                         "mean_error": score["mean_error"]},
              "tau": 0.5, "curve": list(np.linspace(0.1, 3, 20) ** 2), "percents": list(range(5, 101, 5)),
              "fit": {"a": 1.0, "b": 0.01, "t": list(range(5, 101, 5)), "t_star": 60.0, "k": 11}, **(extra or {})}
    (folder / "result.json").write_text(json.dumps(result))
    return err


@pytest.fixture()
def inference(tmp_path):
    rng = np.random.default_rng(4)
    brain = np.zeros(SHAPE, bool)
    brain[2:14, 2:14, 1:11] = True
    root = tmp_path / "runs"  # folder names carry neither dataset nor subject: both travel as values
    dirs, val_err, lesion = [], [], {}
    for i, subj in enumerate(["a", "b", "c"]):
        d = root / f"run{i}"
        dirs.append(("demo", subj, str(d)))
        x = rng.normal(size=SHAPE).astype(np.float32)
        recon = x + rng.normal(0, 0.3, SHAPE).astype(np.float32)
        if subj == "a":  # a validation subject
            val_err.append(_write_condition(d / "val", x, recon, brain)[brain])
            continue
        label = np.zeros(SHAPE, bool)
        label[5:9, 5:9, 4:7 + i] = True
        recon_l = np.where(label, x - 2.0, recon)
        err = _write_condition(d / "lesion", x, recon_l, brain, label)
        lesion[subj] = (err, label)
        _write_condition(d / "healthy", x, recon, brain, score={"mask_size": 10.0 + i, "mean_error": 0.1})
        _write_condition(d / "ghosting", x, recon, brain, score={"mask_size": 20.0 + i, "mean_error": 0.2})
        for k in range(2):
            _write_condition(d / f"ghosting-s{k}", x, recon, brain, score={"mask_size": 11.5 + 5 * k, "mean_error": 0.2})
    return dirs, val_err, lesion, brain, tmp_path


def test_evaluate_experiment_end_to_end(inference):
    dirs, val_err, lesion, brain, tmp = inference
    out = [str(tmp / "m" / n) for n in ("segmentation.tsv", "detection.tsv", "scores.tsv")]
    evaluate_experiment("exp", dirs, *out, protocols=["honest", "paper", "per_image_best"], honest_source="healthy_fpr", honest_fpr=0.02,
                        size_bins=[70, 100], pooled_anomalies=["ghosting"])
    seg = pd.read_csv(out[0], sep="\t")
    assert sorted(seg["protocol"].unique()) == ["honest", "iterative_mask", "paper", "per_image_best"]
    assert len(seg) == 8 and set(seg["dataset"]) == {"demo"} and set(seg["subject"]) == {"b", "c"}
    honest = seg[seg["protocol"] == "honest"]
    assert honest["threshold"].iloc[0] == pytest.approx(np.quantile(np.concatenate(val_err), 0.98), rel=1e-5)
    for subj, (err, label) in lesion.items():
        row = honest[honest["subject"] == subj].iloc[0]
        assert row["dice"] == pytest.approx(_dice(brain & (err > row["threshold"]), label), rel=1e-6)
        best = seg[(seg["protocol"] == "per_image_best") & (seg["subject"] == subj)].iloc[0]
        brute = max(_dice(brain & (err > t), label) for t in np.unique(err[brain]))
        assert best["dice"] == pytest.approx(brute, rel=1e-6)
        assert row["lesion_voxels"] == label.sum()
    assert set(seg["size_class"]) == {"small", "medium"}  # 64 < 70 <= 80 <= 100
    assert np.isfinite(seg[["psnr", "ssim", "assd_mm", "auroc_voxel"]].to_numpy()).all()

    det = pd.read_csv(out[1], sep="\t")
    prim = det[det["score_name"] == "mask_size"].set_index("anomaly")
    assert list(prim.index) == ["ghosting", "ghosting-s0", "ghosting-s1", "lesion", "all"]
    assert prim.loc["ghosting", "auroc"] == 1.0 and prim.loc["ghosting", "n_pos"] == 2
    assert prim.loc["all", "n_pos"] == 2  # only the pooled synthetic types: no levels, no lesion
    # s0 scores 11.5 vs healthy 11, 12: 2 of 4 pairs ordered -> 0.5; s1 (16.5) -> 1
    assert prim.loc["ghosting-s0", "auroc"] == 0.5
    assert prim.loc["ghosting-s1", "auroc"] == 1.0
    assert bool(prim["primary"].all())
    scores = pd.read_csv(out[2], sep="\t")
    assert set(scores["role"]) == {"val", "test"}
    assert (scores[scores["condition"] == "healthy"]["label"] == 0).all()
    assert set(scores["score_name"]) == {"mask_size", "mask_size_fraction", "mean_error"}  # mask_size = the voxel count
    assert scores[scores["primary"]]["score_name"].unique().tolist() == ["mask_size"]

    figs = make_figures("exp", dirs, out[0], out[2], str(tmp / "fig"))
    names = sorted(Path(f).name for f in figs)
    assert names == ["overlay_demo_sub-b.png", "overlay_demo_sub-c.png", "roc.png", "severity.png",
                     "threshold_curves.png"]
    assert all(Path(f).stat().st_size > 1000 for f in figs)
    assert sorted(p.name for p in (tmp / "fig").iterdir() if p.suffix == ".png") == names
    assert sorted(p.stem for p in (tmp / "fig").iterdir() if p.suffix == ".csv") == [Path(n).stem for n in names]
    # a figure that fails leaves the folder as it was (written under a temporary name, renamed whole)
    import itermask.evaluation.figures as figures_module

    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures_module, "roc_figure", broken)
        with pytest.raises(RuntimeError, match="plot failed"):
            make_figures("exp", dirs, out[0], out[2], str(tmp / "fig2"))
    assert not (tmp / "fig2").exists() and not list(tmp.glob(".fig2*"))
    png = sensitivity_figure({"exp": out[0]}, {"exp": 15}, "HF radius r", str(tmp / "fig" / "sens.png"),
                             protocol="honest")
    assert png is not None and Path(png).exists()


def _add_labelled_validation(dirs, brain, tmp, lesion_drop):
    """A val_lesion subject 'v' whose lesion errors are (``lesion_drop``)^2; returns its vectors."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=SHAPE).astype(np.float32)
    label = np.zeros(SHAPE, bool)
    label[4:8, 6:10, 3:6] = True
    recon = np.where(label, x - lesion_drop, x + rng.normal(0, 0.3, SHAPE).astype(np.float32))
    d = tmp / "runs" / "run_v"
    err = _write_condition(d / "val_lesion", x, recon, brain, label)
    return [*dirs, ("demo", "v", str(d))], (err[brain], label[brain])


def test_honest_threshold_from_labelled_validation(inference):
    """honest_source labelled_val: θ = best mean Dice on the val_lesion scans (never the test
    labels); rows say where θ came from; val_lesion scans are validation, not test, scores."""
    dirs, _, lesion, brain, tmp = inference
    runs, (v_err, v_lab) = _add_labelled_validation(dirs, brain, tmp, lesion_drop=1.5)
    out = [str(tmp / "m" / n) for n in ("segmentation.tsv", "detection.tsv", "scores.tsv")]
    evaluate_experiment("exp", runs, *out, protocols=["honest", "paper"], honest_source="labelled_val",
                        honest_fpr=0.02, size_bins=[70, 100], pooled_anomalies=["ghosting"])
    seg = pd.read_csv(out[0], sep="\t", keep_default_na=False)
    assert set(seg["subject"]) == {"b", "c"}  # v sets θ, it is not a test subject
    honest = seg[seg["protocol"] == "honest"]
    assert list(honest["threshold"]) == pytest.approx([P.labelled_threshold([v_err], [v_lab])] * 2, rel=1e-5)
    assert set(honest["threshold_source"]) == {"labelled_val"}
    assert set(seg.loc[seg["protocol"] == "paper", "threshold_source"]) == {"test_labels"}
    assert set(seg.loc[seg["protocol"] == "iterative_mask", "threshold_source"]) == {""}
    paper = seg.loc[seg["protocol"] == "paper", "threshold"].iloc[0]
    assert honest["threshold"].iloc[0] != pytest.approx(paper)  # the lesions differ (drop 1.5 vs 2.0)
    for subj, (err, label) in lesion.items():
        row = honest[honest["subject"] == subj].iloc[0]
        assert row["dice"] == pytest.approx(_dice(brain & (err > row["threshold"]), label), rel=1e-6)
    scores = pd.read_csv(out[2], sep="\t")
    assert set(scores.loc[scores["condition"] == "val_lesion", "role"]) == {"val"}
    det = pd.read_csv(out[1], sep="\t")
    assert det[det["anomaly"] == "lesion"]["n_pos"].max() == 2  # b and c, not v

    with pytest.raises(InputError, match="needs labelled validation scans.*'demo'"):
        evaluate_experiment("exp", dirs, *out, protocols=["honest"], honest_source="labelled_val",
                            honest_fpr=0.02, size_bins=[70, 100], pooled_anomalies=[])


def test_evaluate_without_conditions_writes_headers(tmp_path):
    d = tmp_path / "inference" / "exp" / "demo" / "sub-x"
    d.mkdir(parents=True)
    out = [str(tmp_path / n) for n in ("s.tsv", "d.tsv", "c.tsv")]
    evaluate_experiment("exp", [("demo", "x", str(d))], *out, protocols=["honest"], honest_source="healthy_fpr", honest_fpr=0.01,
                        size_bins=[200, 800], pooled_anomalies=[])
    assert open(out[0]).read().startswith("experiment\tdataset\tsubject\tprotocol")
    assert all(len(pd.read_csv(p, sep="\t")) == 0 for p in out)


def test_evaluate_2d_stack_uses_slices_npz(tmp_path):
    """kind '2d': (H, W, n) results, PSNR/SSIM against the slices2d npz rows named in result.json."""
    rng = np.random.default_rng(5)
    h = 20
    images = rng.normal(size=(3, h, h)).astype(np.float32)  # npz rows with axial indices 30, 31, 32
    npz = tmp_path / "FLAIR_slices2d.npz"
    np.savez(npz, image=images, index=np.array([30, 31, 32]))
    x = np.moveaxis(images[[2]], 0, -1)  # result holds slice 32 only
    brain = np.zeros((h, h, 1), bool)
    brain[3:17, 3:17] = True
    label = np.zeros_like(brain)
    label[8:12, 8:12] = True
    recon = x + 0.1
    recon[label] = x[label] - 3
    d = tmp_path / "inference" / "e2" / "demo" / "sub-z"
    err = _write_condition(d / "lesion", x, recon, brain, label,
                           extra={"kind": "2d", "slices": [32], "inputs": {"slices": str(npz)}})
    (d / "lesion" / "image.nii.gz").unlink()  # force the npz route
    out = [str(tmp_path / n) for n in ("s.tsv", "d.tsv", "c.tsv")]
    evaluate_experiment("e2", [("demo", "z", str(d))], *out, protocols=["per_image_best"], honest_source="healthy_fpr", honest_fpr=0.01,
                        size_bins=[10, 20], pooled_anomalies=[])
    seg = pd.read_csv(out[0], sep="\t").set_index("protocol")
    healthy = brain & ~label
    rng_ = x[healthy].max() - x[healthy].min()
    assert seg.loc["per_image_best", "psnr"] == pytest.approx(10 * np.log10(rng_**2 / 0.01), rel=1e-4)
    assert seg.loc["per_image_best", "dice"] == 1.0 and seg.loc["per_image_best", "assd_mm"] == 0.0
    assert seg.loc["per_image_best", "size_class"] == "medium"  # 16 pixels
    assert err[label].min() > err[healthy].max()


def test_detection_figures_skip_an_experiment_with_validation_scores_only():
    """An experiment that only trains a model (detect and segment false: its scores hold the
    validation scans alone) gets no ROC or severity figure instead of an IndexError."""
    from itermask.evaluation.figures import roc_figure, severity_figure

    scores = pd.DataFrame({"role": ["val", "val"], "condition": ["val", "val"], "label": [0, 0],
                           "score": [1.0, 2.0], "score_name": ["mask_size"] * 2, "primary": [True, True]})
    assert roc_figure(scores, "exp", "unused.png") is None
    assert severity_figure(scores, "exp", "unused.png") is None


def test_sensitivity_stage_uses_the_primary_protocol(tmp_path):
    assert primary_protocol(["paper", "honest"]) == "honest"
    assert primary_protocol(["paper", "per_image_best"]) == "paper"
    tsvs = {}
    for exp, honest in (("r10", 0.5), ("r15", 0.7)):
        tsvs[exp] = str(tmp_path / f"{exp}.tsv")
        pd.DataFrame({"protocol": ["honest", "honest", "paper"], "dice": [honest, honest + 0.1, float("nan")]}
                     ).to_csv(tsvs[exp], sep="\t", index=False)
    png = str(tmp_path / "sens.png")
    assert sensitivity_stage(tsvs, {"r10": 10, "r15": 15}, "hf_radius", png, protocols=["paper", "honest"]) == png
    assert Path(png).stat().st_size > 1000
    with pytest.raises(InputError, match="protocol 'paper'"):  # no finite Dice under the primary protocol
        sensitivity_stage(tsvs, {"r10": 10, "r15": 15}, "hf_radius", str(tmp_path / "none.png"), protocols=["paper"])
    assert not (tmp_path / "none.png").exists()


def test_segmentation_rows_carry_a_diffusion_baselines_inpainting_fraction(tmp_path):
    """result.json's mean_mask_fraction (AutoDDPM) / mean_initial_mask_fraction (DDPM) becomes the
    segmentation.tsv column inpainting_mask_fraction on every protocol's row; NaN without one."""
    rng = np.random.default_rng(1)
    brain = np.zeros(SHAPE, bool)
    brain[2:14, 2:14, 1:11] = True
    label = np.zeros(SHAPE, bool)
    label[5:9, 5:9, 4:7] = True
    dirs = []
    for subj, extra in (("b", {"mean_mask_fraction": 0.7}), ("c", {"mean_initial_mask_fraction": 0.25}), ("d", None)):
        x = rng.normal(size=SHAPE).astype(np.float32)
        _write_condition(tmp_path / subj / "lesion", x, np.where(label, x - 2.0, x), brain, label, extra=extra)
        dirs.append(("demo", subj, str(tmp_path / subj)))
    out = [str(tmp_path / "m" / n) for n in ("segmentation.tsv", "detection.tsv", "scores.tsv")]
    evaluate_experiment("exp", dirs, *out, protocols=["paper"], honest_source="healthy_fpr", honest_fpr=0.02,
                        size_bins=[70, 100], pooled_anomalies=[])
    seg = pd.read_csv(out[0], sep="\t")
    frac = seg.groupby("subject")["inpainting_mask_fraction"].agg(["min", "max"])
    assert frac.loc["b"].tolist() == [0.7, 0.7] and frac.loc["c"].tolist() == [0.25, 0.25]
    assert seg.loc[seg["subject"] == "d", "inpainting_mask_fraction"].isna().all()
