"""Printed tables (spec -> cells -> md/csv/tex) and the published-vs-reproduced comparison,
from small hand-made metric TSVs and a hand-made published CSV."""
from __future__ import annotations

import pandas as pd
import pytest

from itermask.config.schema import FillingValidator, load_schema
from itermask.errors import ConfigError
from itermask.evaluation.detection import DETECTION_COLUMNS, SCORE_COLUMNS
from itermask.evaluation.evaluate import SEGMENTATION_COLUMNS
from itermask.evaluation.published import compare, read_published, reproduced_long, write_comparison
from itermask.evaluation.spec import check_table, table_experiments
from itermask.evaluation.tables import make_table

NAN = float("nan")


def _spec(**table):
    """A table spec validated by the schema's `tables` entry, its defaults filled."""
    tables = [dict(table)]
    FillingValidator(load_schema()["properties"]["tables"]).validate(tables)
    return tables[0]


def _seg(exp, rows):
    out = []
    for ds, subj, protocol, dice, prec, size, oracle in rows:
        out.append({"experiment": exp, "dataset": ds, "subject": subj, "protocol": protocol, "threshold": 0.5,
                    "dice": dice, "sensitivity": 0.5, "precision": prec, "jaccard": 0.4, "assd_mm": 2.0,
                    "auroc_voxel": 0.9, "psnr": 30.0, "ssim": 0.9, "lesion_voxels": 100, "size_class": size,
                    "precision_ref": 1.0 if prec != prec else prec, "psnr_ref": 33.0, "ssim_ref": 0.95,
                    "oracle": oracle})
    return out


def _write(tmp, exp, seg_rows, det_rows):
    seg, det = tmp / f"{exp}_seg.tsv", tmp / f"{exp}_det.tsv"
    pd.DataFrame(seg_rows, columns=SEGMENTATION_COLUMNS).to_csv(seg, sep="\t", index=False, na_rep="NaN")
    pd.DataFrame(det_rows, columns=DETECTION_COLUMNS).to_csv(det, sep="\t", index=False, na_rep="NaN")
    return [str(seg), str(det)]


def _md_rows(path):
    lines = [line for line in open(path).read().splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


SEG_SPEC = dict(
    name="t", kind="segmentation", protocol="paper", metrics=["dice", "precision", "precision_ref", "dice_small"],
    blocks=[{"key": "b1", "label": "Set one", "dataset": "one"}, {"key": "b2", "label": "Set two", "dataset": "two"}],
    rows=[{"label": "A", "experiment": "A"},
          {"label": "B", "cells": {"b1": "B"}, "absent": {"b2": "no such data"}},
          {"label": "A best", "grey": True, "experiment": "A"}],
)


def test_segmentation_table_blocks_per_dataset_grey_and_absent(tmp_path):
    spec = _spec(**SEG_SPEC)
    assert table_experiments(spec) == ["A", "B"]
    a = _write(tmp_path, "A", _seg("A", [
        ("one", "s1", "paper", 0.6, 0.5, "small", ""), ("one", "s2", "paper", 0.8, NAN, "large", ""),
        ("two", "s3", "paper", 0.2, 0.4, "small", ""),
        ("one", "s1", "per_image_best", 0.9, 0.9, "small", "itermask"),
        ("one", "s2", "per_image_best", 0.9, 0.9, "large", "itermask"),
        ("two", "s3", "per_image_best", 0.5, 0.5, "small", "itermask")])
        + [{"experiment": "A", "dataset": "one", "subject": "s9", "protocol": "left_out",
            "threshold_source": "no lesion in the central axial range"}], [])
    b = _write(tmp_path, "B", _seg("B", [("one", "x", "paper", 0.5, 0.5, "small", "")]), [])
    out = [str(tmp_path / f"t.{e}") for e in ("md", "csv", "tex")]
    make_table(spec, {"A": a, "B": b}, *out)
    rows = _md_rows(out[0])
    assert rows[0][:2] == ["", "Set one"] and rows[1] == ["Method"] + ["DSC", "Prec", "Prec (ref)", "DS_S"] * 2
    a_row, b_row, grey = rows[2], rows[3], rows[4]
    # A on dataset one only (never pooled with two): dice 70 ± 10, precision defined for 1 of 2 (a mean over
    # fewer subjects is not bolded against B's, defined for its one subject); the left-out s9 is no cell
    assert a_row[1] == "**70.0 ± 10.0**" and a_row[2] == "50.0 ± 0.0 (1/2)" and a_row[3] == "**75.0 ± 25.0**"
    assert a_row[4] == "**60.0**" and a_row[5] == "20.0"  # small lesions: s1 only; dataset two: s3
    assert b_row[1] == "50.0" and b_row[2] == "50.0" and b_row[5:] == ["–"] * 4  # alone among comparable cells
    assert grey[0] == "A best †" and grey[1] == "90.0 ± 0.0"  # grey rows are never bold
    csv = pd.read_csv(out[1])
    assert csv.loc[0, "b1:dice"] == pytest.approx(70.0) and csv.loc[2, "protocol"] == "per_image_best"
    text = open(out[0]).read()
    assert "IterMask's own per-image best" in text and "B / b2: no such data" in text
    assert "empty prediction counted as 1" in text
    assert "(population SD, ddof 0)" in text and "Test subjects per block: A: n = 2; B: n = 1." in text
    assert "Left out: A: 1 lesion subject(s) without a result (no lesion in the central axial range)." in text
    assert "counting only cells defined for all n subjects" in text
    tex = open(out[2]).read()
    assert r"\rowcolor{gray!20}" in tex and r"\multicolumn{4}{c}{Set one}" in tex


@pytest.mark.parametrize("source, words", [("labelled_val", "labelled validation subjects (split val_lesion"),
                                           ("healthy_fpr", "healthy validation voxels' error quantile")])
def test_honest_caption_names_the_threshold_source(tmp_path, source, words):
    spec = _spec(**{**SEG_SPEC, "protocol": "honest", "rows": [{"label": "A", "experiment": "A"}]})
    rows = [{**r, "threshold_source": source} for r in _seg("A", [("one", "s1", "honest", 0.6, 0.5, "small", "")])]
    out = [str(tmp_path / f"t.{e}") for e in ("md", "csv", "tex")]
    make_table(spec, {"A": _write(tmp_path, "A", rows, [])}, *out)
    text = open(out[0]).read()
    assert "Threshold (honest): honest (θ fixed without test labels): " in text and words in text


def test_detection_table_block_is_anomaly_on_dataset(tmp_path):
    spec = _spec(name="d", kind="detection", metrics=["auroc", "fpr80"],
                 blocks=[{"key": "g", "dataset": "one", "anomaly": "ghosting"}, {"key": "s", "anomaly": "spike"}],
                 rows=[{"label": "A", "experiment": "A"}])
    det = []
    for ds, anomaly, au in (("one", "ghosting", 0.9), ("two", "ghosting", 0.1), ("one", "spike", 0.7)):
        for score, primary in (("mask_size", True), ("mean_error", False)):
            det.append({"experiment": "A", "dataset": ds, "anomaly": anomaly, "score_name": score, "primary": primary,
                        "n_pos": 2, "n_neg": 2, "auroc": au if primary else 0.0, "auprc": 0.5, "fpr80": 0.25,
                        "fpr90": 0.5, "fnr80": 0.0, "fnr90": 0.0})
    a = _write(tmp_path, "A", [], det)
    out = [str(tmp_path / f"d.{e}") for e in ("md", "csv", "tex")]
    make_table(spec, {"A": a}, *out)
    assert _md_rows(out[0])[2] == ["A", "90.0", "25.0", "70.0", "25.0"]
    assert "Each block: 2 anomalous against 2 healthy test scans (AUROC moves in steps of 25)." in open(out[0]).read()
    assert pd.read_csv(out[1])["protocol"].isna().all()  # no threshold protocol in detection


def test_check_table_names_the_problem():
    with pytest.raises(ConfigError, match=r"'tables' \(t\), row 'A': 'A' is not an experiment"):
        check_table(_spec(**SEG_SPEC), {"B": {}})
    bad = dict(SEG_SPEC, metrics=["auroc"])
    with pytest.raises(ConfigError, match="segmentation table cannot show metrics"):
        check_table(_spec(**bad), {"A": {}, "B": {}})


def test_comparison_of_known_published_and_reproduced_csv(tmp_path):
    pub = tmp_path / "pub.csv"
    pub.write_text("# Paper X, Table 9\nrow,block,metric,value,note\n"
                   "A,b1,dice,80.0,\nA,b1,precision,1.0,likely misprint\nC,b1,dice,50.0,\n"
                   "A,b1,sensitivity,0.5,printed as a fraction (kept as printed)\n")
    repro = tmp_path / "t.csv"
    repro.write_text("row,grey,protocol,b1:dice,b1:dice:sd,b1:dice:k,b1:dice:n,b1:precision,b1:sensitivity\n"
                     "A,False,paper,70.5,3,2,2,82.0,90.0\nB,False,paper,60.0,0,1,1,NaN,NaN\n")
    long = reproduced_long(repro)
    assert list(long["row"]) == ["A"] * 3 + ["B"] * 3  # the :sd/:k/:n columns are not cells
    cmp = compare(read_published(pub), long).set_index(["row", "block", "metric"])
    assert cmp.loc[("A", "b1", "dice"), "difference"] == pytest.approx(-9.5)
    assert cmp.loc[("A", "b1", "precision"), "difference"] == pytest.approx(81.0)
    assert cmp.loc[("A", "b1", "precision"), "note"] == "likely misprint; definition differs"  # empty prediction rule
    assert cmp.loc[("A", "b1", "dice"), "note"] == ""
    assert pd.isna(cmp.loc[("A", "b1", "sensitivity"), "difference"])  # a fraction kept as printed: no gap
    assert cmp.loc[("A", "b1", "sensitivity"), ["published", "reproduced"]].tolist() == [0.5, 90.0]
    assert pd.isna(cmp.loc[("C", "b1", "dice"), "reproduced"])  # published only
    assert pd.isna(cmp.loc[("B", "b1", "dice"), "published"])  # reproduced only
    md = tmp_path / "vs.md"
    write_comparison("t", str(repro), str(pub), str(md), str(tmp_path / "vs.csv"), {})
    assert "Paper X, Table 9" in md.read_text() and "| A | b1 | DSC | 80.0 | 70.5 | -9.5 |" in md.read_text()
    assert "Definitions that differ (definition differs): Prec (ours: an empty prediction" in md.read_text()
    assert "ASSD (ours" not in md.read_text()  # only the compared metrics are named
    # our row 'C (ours)' is the paper's 'C': compared under the paper's label
    repro.write_text("row,grey,protocol,b1:dice\nC (ours),False,paper,52.0\n")
    out = write_comparison("t", str(repro), str(pub), str(md), str(tmp_path / "vs.csv"), {"C (ours)": "C"})
    assert out.set_index(["row", "block", "metric"]).loc[("C", "b1", "dice"), "difference"] == pytest.approx(2.0)


def test_every_shipped_published_csv_reads():
    from itermask.evaluation.published import PUBLISHED_DIR

    files = sorted(PUBLISHED_DIR.glob("*.csv"))
    assert len(files) == 10
    for f in files:
        df = read_published(f)
        assert df["value"].notna().all() and open(f).readline().startswith("# Liang et al.")


def test_bold_competes_within_a_protocol():
    """An honest-θ or iterative-mask row beside the paper-protocol rows is never bolded against
    them; two rows of one protocol are compared as the papers bold."""
    from itermask.evaluation.layout import Cell, Row, best_flags

    def row(protocol, dice, grey=False):
        return Row("r", grey, protocol, cells={"b": {"dice": Cell(dice, 0.0, 3, 3)}})

    rows = [row("paper", 0.4), row("paper", 0.5), row("honest", 0.9), row("per_image_best", 0.99, grey=True),
            row("iterative_mask", 0.7), row("iterative_mask", 0.6)]
    assert best_flags(rows, "b", "dice") == [False, True, False, False, True, False]


def test_caption_names_each_rows_training_from_the_trained_experiments_settings(tmp_path):
    from pathlib import Path

    from itermask.config.study import Study, load_config
    from itermask.evaluation.spec import row_training

    root = Path(__file__).resolve().parents[2]
    study = Study(load_config(root / "config.yaml"), base_dir=root)
    config = study.config
    spec = _spec(name="t", kind="segmentation", protocol="paper", metrics=["dice"],
                 blocks=[{"key": "b", "dataset": "demo"}],
                 rows=[{"label": "AE", "experiment": "ae_flair"},
                       {"label": "IterMask3D fixed", "experiment": "im3d_flair_seg_fixed"},  # model_from im3d_flair_seg
                       {"label": "IterMask2", "experiment": "im2_flair"},
                       {"label": "DDPM", "experiment": "ddpm_flair"},
                       {"label": "AutoDDPM", "experiment": "autoddpm_flair"},  # model_from ddpm_flair
                       {"label": "DDPM, honest", "experiment": "ddpm_flair", "protocol": "honest"}])
    training = row_training(spec, study)
    e = config["experiments"]
    ae_steps, seg_steps = e["ae_flair"]["train"]["steps"], e["im3d_flair_seg"]["train"]["steps"]
    ddpm = f"{e['ddpm_flair']['train']['steps']} steps, batch {e['ddpm_flair']['train']['batch_size']}"
    assert training == {"AE": f"{ae_steps} steps, batch 2",
                        # a shared model's owner: its experiment's name when no row of the table shows it ...
                        "IterMask3D fixed": f"{seg_steps} steps, batch 2, the model of im3d_flair_seg",
                        "IterMask2": f"{config['method_defaults']['itermask2']['train']['steps']} steps, batch 8",
                        "DDPM": ddpm, "DDPM, honest": ddpm,
                        "AutoDDPM": f"{ddpm}, the model of DDPM"}  # ... else the first row's label that shows it
    assert ae_steps != seg_steps  # the rows' texts come from their own models
    rows = _seg("ae_flair", [("demo", "s1", "paper", 0.6, 0.5, "small", "")])
    out = [str(tmp_path / f"t.{x}") for x in ("md", "csv", "tex")]
    metrics = {x: _write(tmp_path, x, rows if x == "ae_flair" else [], []) for x in table_experiments(spec)}
    make_table(spec, metrics, *out, context={"training": training})
    assert f"Training: AE: {ae_steps} steps, batch 2; IterMask3D fixed" in open(out[0]).read()


def test_caption_counts_converged_iterative_masks_once_per_run(tmp_path):
    spec = _spec(name="t", kind="segmentation", protocol="paper", metrics=["dice"],
                 blocks=[{"key": "b", "dataset": "one"}],
                 rows=[{"label": "A", "experiment": "A"}, {"label": "A honest", "experiment": "A", "protocol": "honest"},
                       {"label": "B", "experiment": "B"}, {"label": "A best", "grey": True, "experiment": "A"}])
    a = [{**r, "converged": c, "iterations": i}
         for r, c, i in zip(_seg("A", [("one", s, p, 0.5, 0.5, "small", "") for p in ("paper", "honest", "per_image_best")
                                       for s in ("s1", "s2")]), [1.0, 0.0] * 3, [5, 20] * 3)]
    b = _seg("B", [("one", "s1", "paper", 0.5, 0.5, "small", "")])  # a baseline: no iterations (NaN)
    out = [str(tmp_path / f"t.{e}") for e in ("md", "csv", "tex")]
    make_table(spec, {"A": _write(tmp_path, "A", a, []), "B": _write(tmp_path, "B", b, [])}, *out)
    text = open(out[0]).read()
    assert ("Iterative masks converged (change < tol before the cap), subjects: "
            "A 1/2 (5–20 iterations; 1 stopped at the cap).") in text


@pytest.mark.parametrize("other_healthy, expected", [
    (True, "A 2/4 (3–20 iterations; 2 stopped at the cap)"),  # dataset two has its own healthy scans
    (False, "A 3/5 (2–20 iterations; 2 stopped at the cap)"),  # two's anomalous scans join one's, as detection rows do
])
def test_detection_caption_counts_each_test_scan_of_its_blocks_once(tmp_path, other_healthy, expected):
    spec = _spec(name="d", kind="detection", metrics=["auroc"],
                 blocks=[{"key": "g", "dataset": "one", "anomaly": "ghosting"},
                         {"key": "s", "dataset": "one", "anomaly": "spike"}],
                 rows=[{"label": "A", "experiment": "A"}])
    det = [{"experiment": "A", "dataset": "one", "anomaly": a, "score_name": "mask_size", "primary": True,
            "n_pos": 1, "n_neg": 2, "auroc": 1.0, "auprc": 1.0, "fpr80": 0.0, "fpr90": 0.0, "fnr80": 0.0,
            "fnr90": 0.0} for a in ("ghosting", "spike")]
    scans = [  # (dataset, subject, condition, role, converged, iterations)
        ("one", "h1", "healthy", "test", 1.0, 4), ("one", "h2", "healthy", "test", 0.0, 20),
        ("one", "h1", "ghosting", "test", 0.0, 20), ("one", "h1", "spike", "test", 1.0, 3),
        ("one", "h1", "zipper", "test", 1.0, 2),    # not a block of this table
        ("two", "x1", "ghosting", "test", 1.0, 2),  # another dataset
        ("one", "v1", "val", "val", 1.0, 2),        # validation: never in a detection cell
    ]
    rows = [{"experiment": "A", "dataset": d, "subject": s, "condition": c, "role": r, "label": int(c != "healthy"),
             "score_name": name, "score": 1.0, "primary": name == "mask_size", "converged": conv, "iterations": its}
            for d, s, c, r, conv, its in scans + [("two", "x2", "healthy", "test", 1.0, 2)] * other_healthy
            for name in ("mask_size", "mean_error")]
    paths = _write(tmp_path, "A", [], det)
    pd.DataFrame(rows, columns=SCORE_COLUMNS).to_csv(tmp_path / "A_scores.tsv", sep="\t", index=False)
    out = [str(tmp_path / f"d.{e}") for e in ("md", "csv", "tex")]
    make_table(spec, {"A": paths + [str(tmp_path / "A_scores.tsv")]}, *out)
    assert ("Iterative masks converged (change < tol before the cap), test scans of the table: "
            f"{expected}.") in open(out[0]).read()


def test_detection_caption_counts_taus_at_the_curves_first_point(tmp_path):
    spec = _spec(name="d", kind="detection", metrics=["auroc"],
                 blocks=[{"key": "g", "dataset": "one", "anomaly": "ghosting"}], rows=[{"label": "A", "experiment": "A"}])
    det = [{"experiment": "A", "dataset": "one", "anomaly": "ghosting", "score_name": "mask_size", "primary": True,
            "n_pos": 1, "n_neg": 2, "auroc": 1.0, "auprc": 1.0, "fpr80": 0.0, "fpr90": 0.0, "fnr80": 0.0,
            "fnr90": 0.0}]
    scans = [("h1", "healthy", 1.0), ("h2", "healthy", 0.0), ("h1", "ghosting", float("nan"))]  # NaN: a fixed tau
    rows = [{"experiment": "A", "dataset": "one", "subject": s, "condition": c, "role": "test", "label": int(c != "healthy"),
             "score_name": "mask_size", "score": 1.0, "primary": True, "converged": 1.0, "iterations": 3,
             "tau_at_first_point": first} for s, c, first in scans]
    paths = _write(tmp_path, "A", [], det)
    pd.DataFrame(rows, columns=SCORE_COLUMNS).to_csv(tmp_path / "A_scores.tsv", sep="\t", index=False, na_rep="NaN")
    out = [str(tmp_path / f"d.{e}") for e in ("md", "csv", "tex")]
    make_table(spec, {"A": paths + [str(tmp_path / "A_scores.tsv")]}, *out)
    text = open(out[0]).read()
    assert "A 3/3 (3 iterations; τ at the phase-A curve's first point for 1 of 2)." in text
    assert "nearly the whole brain stays masked" in text
