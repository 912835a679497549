"""Tables built from small hand-made metric TSVs have the expected cells."""
from __future__ import annotations

import numpy as np
import pandas as pd

from itermask.evaluation.evaluate import DETECTION_COLUMNS, SEGMENTATION_COLUMNS
from itermask.evaluation.tables import format_cell, make_table

NAN = float("nan")


def _seg_rows(exp, protocol, dice, assd, size_classes):
    rows = []
    for i, (d, a, c) in enumerate(zip(dice, assd, size_classes)):
        rows.append({"experiment": exp, "dataset": "demo", "subject": f"s{i}", "protocol": protocol,
                     "threshold": 0.5, "dice": d, "sensitivity": 0.5, "precision": 0.5, "jaccard": d / (2 - d),
                     "assd_mm": a, "auroc_voxel": 0.9, "psnr": 30.0, "ssim": 0.9, "lesion_voxels": 100,
                     "size_class": c})
    return rows


def _write(tmp, exp, seg_rows, det_rows):
    seg = tmp / f"{exp}_seg.tsv"
    det = tmp / f"{exp}_det.tsv"
    pd.DataFrame(seg_rows, columns=SEGMENTATION_COLUMNS).to_csv(seg, sep="\t", index=False, na_rep="NaN")
    pd.DataFrame(det_rows, columns=DETECTION_COLUMNS).to_csv(det, sep="\t", index=False, na_rep="NaN")
    return [str(seg), str(det)]


def _md_rows(path):
    lines = [l for l in open(path).read().splitlines() if l.startswith("| ")]
    return [[c.strip() for c in l.strip("|").split("|")] for l in lines]


def test_format_cell():
    assert format_cell(0.71234, 0.05, 3, 3, 3) == "0.712 ± 0.050"
    assert format_cell(2.0, 1.0, 2, 3, 2) == "2.00 ± 1.00 (2/3)"
    assert format_cell(NAN, NAN, 0, 3, 3) == "n/a"


def test_segmentation_table_cells_and_bold(tmp_path):
    a = _write(tmp_path, "A", _seg_rows("A", "honest", [0.6, 0.8], [2.0, 4.0], ["small", "large"])
               + _seg_rows("A", "paper", [0.9, 0.9], [1.0, NAN], ["small", "large"]), [])
    b = _write(tmp_path, "B", _seg_rows("B", "honest", [0.5, 0.5], [1.0, 1.0], ["small", "small"]), [])
    empty = _write(tmp_path, "C", [], [])
    out = [str(tmp_path / f"t.{e}") for e in ("md", "csv", "tex")]
    make_table("t", "segmentation_2d", {"A": a, "B": b, "C": empty}, *out, caption="cap")
    rows = _md_rows(out[0])
    header, body = rows[0], rows[1:]
    assert header[:5] == ["Experiment", "Protocol", "n", "Dice", "Sens"]
    assert [r[:3] for r in body] == [["A", "honest", "2"], ["B", "honest", "2"], ["A", "paper", "2"]]
    col = {h: i for i, h in enumerate(header)}
    # mean ± SD (ddof 0): A honest dice (0.6, 0.8) -> 0.700 ± 0.100, best among honest rows
    assert body[0][col["Dice"]] == "**0.700 ± 0.100**"
    assert body[1][col["Dice"]] == "0.500 ± 0.000"
    # ASSD: lower is better -> B (1.00) bold, A 3.00 ± 1.00
    assert body[0][col["ASSD (mm)"]] == "3.00 ± 1.00"
    assert body[1][col["ASSD (mm)"]] == "**1.00 ± 0.00**"
    # paper row alone in its protocol: no bold; one undefined ASSD -> (1/2)
    assert body[2][col["Dice"]] == "0.900 ± 0.000"
    assert body[2][col["ASSD (mm)"]] == "1.00 ± 0.00 (1/2)"
    # size classes: A honest small = 0.6 (n=1), medium absent -> n/a, large 0.8
    assert body[0][col["Dice small"]] == "**0.600 ± 0.000 (n=1)**"
    assert body[1][col["Dice small"]] == "0.500 ± 0.000 (n=2)"
    assert body[1][col["Dice large"]] == "n/a"
    assert body[0][col["Dice medium"]] == "n/a"
    assert "C" not in [r[0] for r in body] and "No rows (left out): C" in open(out[0]).read()
    csv = pd.read_csv(out[1])
    assert np.isclose(csv.loc[(csv.experiment == "A") & (csv.protocol == "honest"), "dice_mean"].item(), 0.7)
    tex = open(out[2]).read()
    assert r"\textbf{0.700 $\pm$ 0.100}" in tex and r"\begin{tabular}" in tex


def test_detection_table_cells_and_bold(tmp_path):
    def det(exp, auroc, fpr):
        rows = []
        for anomaly, au, fp in zip(["ghosting", "spike", "ghosting-s0", "all"], auroc, fpr):
            for score, primary in (("mask_size", True), ("mean_error", False)):
                rows.append({"experiment": exp, "anomaly": anomaly, "score_name": score, "primary": primary,
                             "n_pos": 3, "n_neg": 4, "auroc": au if primary else 0.0, "auprc": 0.5,
                             "fpr80": fp, "fpr90": fp, "fnr80": 0.1, "fnr90": 0.2})
        return rows

    a = _write(tmp_path, "A", [], det("A", [0.9, 0.6, 0.1, 0.75], [0.2, 0.5, 0.9, 0.3]))
    b = _write(tmp_path, "B", [], det("B", [0.8, 0.7, 0.2, 0.75], [0.1, 0.5, 0.9, 0.3]))
    out = [str(tmp_path / f"d.{e}") for e in ("md", "csv", "tex")]
    make_table("d", "detection", {"A": a, "B": b}, *out, caption="")
    rows = _md_rows(out[0])
    header, body = rows[0], rows[1:]
    col = {h: i for i, h in enumerate(header)}
    assert "ghosting-s0 AUROC" not in col  # severity levels are not in the table
    assert list(col)[3:9] == ["ghosting AUROC", "ghosting AUPRC", "ghosting FPR80", "ghosting FPR90",
                              "ghosting FNR80", "ghosting FNR90"]
    assert body[0][col["ghosting AUROC"]] == "**0.900**" and body[1][col["ghosting AUROC"]] == "0.800"
    assert body[1][col["spike AUROC"]] == "**0.700**"
    assert body[1][col["ghosting FPR80"]] == "**0.100**"  # lower is better
    assert body[0][col["all AUROC"]] == "**0.750**" == body[1][col["all AUROC"]]  # ties both bold
    assert body[0][col["Score"]] == "mask_size" and body[0][col["n neg/pos"]] == "4/3"
    csv = pd.read_csv(out[1])
    assert csv.loc[csv.experiment == "B", "spike_auroc"].item() == 0.7
