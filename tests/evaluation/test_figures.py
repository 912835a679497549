"""Figures write the numbers they plot (a CSV beside each PNG), per test dataset, never pooled:
ROC AUROC = the detection table's, no lesion curve; severity x = the swept parameter's values;
sensitivity one line per test dataset; IterMask2 per-slice curves; skipped figures logged."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from itermask.core.threshold import POLE
from itermask.evaluation import detection_figures, threshold_figure
from itermask.evaluation.detection import detection_rows
from itermask.evaluation.figures import make_figures, overlay_figure, roc_figure, sensitivity_stage, severity_figure
from itermask.evaluation.scans import Scan
from itermask.evaluation.threshold_figure import threshold_curve_figure


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture()
def logger():
    lg = logging.getLogger("test_figures")
    lg.handlers.clear()
    handler = Records()
    lg.addHandler(handler)
    lg.setLevel(logging.INFO)
    lg.propagate = False
    lg.lines = handler.lines
    return lg


@pytest.fixture()
def figures(monkeypatch):
    """The matplotlib figures saved, by file name (axes inspected before they are closed)."""
    saved = {}

    def keep(save):
        def wrapper(fig, path, **kw):
            saved[Path(path).name] = [(a.get_xlabel(), a.get_ylabel(), a.get_title(),
                                       [(ln.get_label(), ln.get_xdata(), ln.get_ydata()) for ln in a.get_lines()])
                                      for a in fig.axes if a.axison]
            return save(fig, path, **kw)
        return wrapper

    for module in (detection_figures, threshold_figure):
        monkeypatch.setattr(module, "save_figure", keep(module.save_figure))
    return saved


def _scores(rows):
    """scores.tsv rows (dataset, subject, condition, score) of the primary score."""
    out = []
    for ds, subj, cond, score in rows:
        out.append({"experiment": "exp", "dataset": ds, "subject": subj, "condition": cond,
                    "role": "val" if cond == "val" else "test", "label": 0 if cond in ("val", "healthy") else 1,
                    "score_name": "mask_size", "score": float(score), "primary": True})
    return pd.DataFrame(out)


def _two_datasets():
    """dsA scores 0-10, dsB 100-110: pooled, dsB's healthy scans outrank dsA's anomalies."""
    rows = []
    for ds, base in (("dsA", 0.0), ("dsB", 100.0)):
        for i in range(3):
            rows += [(ds, f"h{i}", "healthy", base + i), (ds, f"h{i}", "ghosting", base + 1.5 + 2 * i),
                     (ds, f"h{i}", "ghosting-s0", base + 0.5 + i), (ds, f"h{i}", "ghosting-s1", base + 3 + i),
                     (ds, f"l{i}", "lesion", base + 9)]
        rows.append((ds, "v", "val", base))
    return _scores(rows)


def test_roc_is_per_dataset_equals_detection_and_has_no_lesion_curve(tmp_path, figures):
    scores = _two_datasets()
    png = roc_figure(scores, "exp", str(tmp_path / "roc.png"))
    pts = pd.read_csv(tmp_path / "roc.csv")
    assert png and Path(png).exists()
    assert set(pts["anomaly"]) == {"ghosting"}  # no lesion, no severity level
    det = pd.DataFrame(detection_rows("exp", scores, pooled=[])).set_index(["dataset", "anomaly"])
    for (ds, anomaly), g in pts.groupby(["dataset", "anomaly"]):
        assert g["auroc"].nunique() == 1 and g["auroc"].iloc[0] == pytest.approx(det.loc[(ds, anomaly), "auroc"])
        assert g["n_neg"].iloc[0] == 3 and g["n_pos"].iloc[0] == 3
        assert np.trapezoid(g["tpr"], g["fpr"]) == pytest.approx(g["auroc"].iloc[0])  # the drawn area
    assert set(pts["dataset"]) == {"dsA", "dsB"}
    test = scores[scores["condition"].isin(["healthy", "ghosting"])]
    pooled = roc_auc_score(test["label"], test["score"])
    assert not np.isclose(pooled, det.loc[("dsA", "ghosting"), "auroc"])  # pooling would change the curve
    assert len(figures["roc.png"]) == 2  # one panel per test dataset


def test_severity_axis_shows_the_swept_parameter_values(tmp_path, figures, logger):
    scores = _two_datasets()
    sweeps = {"ghosting": {"param": "intensity", "values": [0.5, 2.0]}}
    severity_figure(scores, "exp", str(tmp_path / "severity.png"), severity=sweeps, logger=logger)
    pts = pd.read_csv(tmp_path / "severity.csv")
    assert list(pts["value"]) == [0.5, 2.0, 0.5, 2.0] and set(pts["parameter"]) == {"intensity"}
    assert list(pts["dataset"]) == ["dsA", "dsA", "dsB", "dsB"] and list(pts["level"]) == [0, 1, 0, 1]
    det = pd.DataFrame(detection_rows("exp", scores, pooled=[])).set_index(["dataset", "anomaly"])
    for r in pts.itertuples():
        assert r.auroc == pytest.approx(det.loc[(r.dataset, f"ghosting-s{r.level}"), "auroc"])
    xlabel, _, _, lines = figures["severity.png"][0]
    assert xlabel == "intensity" and list(lines[0][1]) == [0.5, 2.0]
    # no config for the type: the level index, said in the log
    severity_figure(scores, "exp", str(tmp_path / "s2.png"), severity={}, logger=logger)
    assert set(pd.read_csv(tmp_path / "s2.csv")["parameter"]) == {"level"}
    assert any("no parameter values for 'ghosting'" in m for m in logger.lines)


def _seg(path, rows):
    pd.DataFrame(rows, columns=["dataset", "subject", "protocol", "dice"]).to_csv(path, sep="\t", index=False)
    return str(path)


def test_sensitivity_one_line_per_dataset_with_mean_sd(tmp_path, figures, logger):
    tsvs = {
        "e60": _seg(tmp_path / "a.tsv", [("dsA", "1", "honest", 0.2), ("dsA", "2", "honest", 0.6),
                                         ("dsB", "3", "honest", 0.9), ("dsA", "1", "paper", 0.99)]),
        "e80": _seg(tmp_path / "b.tsv", [("dsA", "1", "honest", 0.5), ("dsA", "2", "honest", float("nan")),
                                         ("dsB", "3", "honest", float("nan"))]),
    }
    png, csv = str(tmp_path / "s.png"), str(tmp_path / "data" / "s.csv")
    sensitivity_stage(tsvs, {"e60": 60, "e80": 80}, "tau_percentile", png, protocols=["paper", "honest"],
                      logger=logger, out_csv=csv, experiment="im2")
    pts = pd.read_csv(csv).set_index(["value", "dataset"])
    assert len(pts) == 3 and set(pts["protocol"]) == {"honest"}
    assert pts.loc[(60, "dsA"), "mean"] == pytest.approx(0.4) and pts.loc[(60, "dsA"), "sd"] == pytest.approx(0.2)
    assert pts.loc[(60, "dsA"), "n"] == 2 and pts.loc[(80, "dsA"), "n"] == 1 and pts.loc[(80, "dsA"), "n_subjects"] == 2
    assert pts.loc[(60, "dsB"), "mean"] == pytest.approx(0.9)
    assert any("e80" in m and "dsB" in m and "no finite dice" in m for m in logger.lines)
    xlabel, ylabel, title, lines = figures["s.png"][0]
    assert "tau_percentile" in xlabel and ylabel.startswith("Dice, honest protocol") and title == "im2"
    assert sorted(label for label, _, _ in lines if not label.startswith("_")) == ["dsA", "dsB"]


def test_adaptive_itermask2_slices_are_plotted_and_the_fit_stops_at_its_pole(tmp_path, figures):
    t = np.arange(5.0, 101, 5)
    b = 0.02  # pole at t = 78.5
    tangent = {"a": 0.5, "b": b, "branch": "tangent", "t_star": 40.0, "tau": 1.2}
    result = {"kind": "2d", "threshold": "subject", "percents": list(t), "slices": [26, 27],
              "curves": [list(0.5 * np.tan(b * np.minimum(t, 75))), list(t / 10)],
              "fits": [tangent, {"a": 1.0, "b": 0.01, "branch": "derivative", "t_star": 50.0, "tau": 0.8}]}
    scans = [Scan("ds", "s1", "lesion", tmp_path, result), Scan("ds", "s1", "ghosting", tmp_path, result)]
    assert threshold_curve_figure(scans, str(tmp_path / "threshold_curves.png"))
    pts = pd.read_csv(tmp_path / "threshold_curves.csv")
    assert list(pts["slice"].unique()) == [26, 27] and set(pts["condition"]) == {"lesion"}
    assert pts[pts["slice"] == 27]["fit"].isna().all()  # derivative branch: no fit
    fit26 = pts[pts["slice"] == 26].set_index("t")["fit"]
    assert fit26[40.0] == pytest.approx(0.5 * np.tan(0.8)) and np.isnan(fit26[80.0])  # past the pole
    panels = figures["threshold_curves.png"]
    assert len(panels) == 2
    for xlabel, ylabel, _, _ in panels:
        assert xlabel == "% of brain voxels removed" and "z²" in ylabel
    fit_lines = [(x, y) for label, x, y in panels[0][3] if label == "a·tan(b·t)"]
    assert len(fit_lines) == 1
    x, y = (np.asarray(v, float) for v in fit_lines[0])
    drawn = np.isfinite(y)
    assert drawn.sum() > 100 and np.all(np.abs(b * x[drawn]) < POLE) and np.all(y[drawn] >= 0)  # no wrap past it
    assert not [label for label, *_ in panels[1][3] if label == "a·tan(b·t)"]


SHAPE = (8, 8, 4)


def _condition(folder: Path, score: float, label: bool = False, mask: bool = True):
    folder.mkdir(parents=True)
    brain = np.zeros(SHAPE, np.uint8)
    brain[1:7, 1:7] = 1
    lab = np.zeros(SHAPE, np.uint8)
    lab[3:5, 3:5, 2] = 1
    err = (brain * 0.1 + lab * 2.0).astype(np.float32)
    arrays = {"error.nii.gz": err, "recon.nii.gz": err, "brainmask.nii.gz": brain}
    if label:
        arrays["label.nii.gz"] = lab
    if mask:
        arrays["mask.nii.gz"] = lab
    for name, a in arrays.items():
        nib.save(nib.Nifti1Image(a, np.eye(4)), folder / name)
    (folder / "result.json").write_text(json.dumps({"kind": "3d", "score_name": "mean_error", "score": score}))


def _baseline_experiment(tmp):
    runs, seg, scores = [], [], []
    for i in range(2):
        d = tmp / "runs" / f"r{i}"
        _condition(d / "lesion", 1.0, label=i == 0, mask=False)
        _condition(d / "healthy", float(i), mask=False)
        _condition(d / "ghosting", 2.0 + i, mask=False)
        runs.append(("ds", f"s{i}", str(d)))
        seg.append({"dataset": "ds", "subject": f"s{i}", "protocol": "paper", "threshold": 0.5})
        scores += [("ds", f"s{i}", "healthy", float(i)), ("ds", f"s{i}", "ghosting", 2.0 + i),
                   ("ds", f"s{i}", "lesion", 1.0)]
    pd.DataFrame(seg).to_csv(tmp / "seg.tsv", sep="\t", index=False)
    _scores(scores).to_csv(tmp / "scores.tsv", sep="\t", index=False)
    return runs, str(tmp / "seg.tsv"), str(tmp / "scores.tsv")


def test_make_figures_logs_skipped_figures_and_writes_csvs_deterministically(tmp_path, logger):
    runs, seg, scores = _baseline_experiment(tmp_path)
    pngs = make_figures("base", runs, seg, scores, str(tmp_path / "fig"), logger=logger)
    assert sorted(Path(p).name for p in pngs) == ["overlay_ds_sub-s0.png", "roc.png"]
    files = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert files == ["overlay_ds_sub-s0.csv", "overlay_ds_sub-s0.png", "roc.csv", "roc.png"]
    text = "\n".join(logger.lines)
    assert "skipped threshold_curves.png" in text and "skipped severity.png" in text
    assert "skipped overlay of ds sub-s1: no label.nii.gz" in text
    overlay = pd.read_csv(tmp_path / "fig" / "overlay_ds_sub-s0.csv")
    assert list(overlay["layer"]) == ["paper", "ground_truth"]  # a baseline: no iterative mask drawn
    assert overlay.set_index("layer").loc["ground_truth", "voxels"] == 4 and overlay["slice"].iloc[0] == 2
    first = {f: (tmp_path / "fig" / f).read_bytes() for f in files}
    make_figures("base", runs, seg, scores, str(tmp_path / "fig"), logger=logger)
    assert {f: (tmp_path / "fig" / f).read_bytes() for f in files} == first


def test_overlay_logs_thresholds_beyond_its_colours(tmp_path, logger):
    _condition(tmp_path / "lesion", 1.0, label=True)
    scan = Scan("ds", "s", "lesion", tmp_path / "lesion", {"kind": "3d"})
    thresholds = {f"p{i}": 0.05 * (i + 1) for i in range(7)} | {"nan": float("nan")}
    overlay_figure(scan, thresholds, str(tmp_path / "o.png"), logger=logger)
    layers = pd.read_csv(tmp_path / "o.csv", keep_default_na=False)
    drawn = layers[layers["colour"] != ""]["layer"].tolist()
    assert drawn == ["iterative_mask"] + [f"p{i}" for i in range(6)] + ["ground_truth"]
    assert any("p6 not drawn (more than 6 thresholds)" in m for m in logger.lines)
    assert any("nan not drawn (no finite threshold)" in m for m in logger.lines)
