"""Result tables regenerated from the metric TSVs (METHOD.md §9), as Markdown, CSV and LaTeX.

Every cell is computed from the TSVs written by ``itermask.evaluation.evaluate``; an experiment whose
TSV has no rows is left out (and named in the table's note). Kinds:

- ``detection``: one row per experiment, columns per anomaly × (AUROC, AUPRC, FPR80, FPR90,
  FNR80, FNR90) of the experiment's primary detection score; severity levels (``<type>-s<k>``)
  are left out (they belong to the severity figure).
- ``segmentation`` / ``threshold``: one row per experiment × protocol, mean ± SD over subjects
  (SD with ddof = 0) of Dice, sensitivity, precision, Jaccard, ASSD, voxel AUROC, PSNR, SSIM.
- ``segmentation_2d``: as ``segmentation`` plus Dice by lesion-size class.

The best value of a column is bold (higher is better, except ASSD, FPR and FNR); for
segmentation the best is marked within each protocol, so methods are compared under the same
thresholding. When some subjects have an undefined metric (e.g. ASSD with an empty
prediction) the cell shows how many subjects it averages, ``(k/n)``; a cell with no defined
value shows ``n/a``.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from itermask.io.atomic import write_text

DETECTION = [("auroc", "AUROC", True), ("auprc", "AUPRC", True), ("fpr80", "FPR80", False),
             ("fpr90", "FPR90", False), ("fnr80", "FNR80", False), ("fnr90", "FNR90", False)]
SEGMENTATION = [("dice", "Dice", True, 3), ("sensitivity", "Sens", True, 3), ("precision", "Prec", True, 3),
                ("jaccard", "Jaccard", True, 3), ("assd_mm", "ASSD (mm)", False, 2),
                ("auroc_voxel", "AUROC", True, 3), ("psnr", "PSNR (dB)", True, 2), ("ssim", "SSIM", True, 3)]
SIZE_CLASSES = ("small", "medium", "large")
PROTOCOL_ORDER = ("honest", "paper", "per_image_best", "iterative_mask")
KINDS = ("detection", "segmentation", "segmentation_2d", "threshold")
SEVERITY = re.compile(r"^.+-s\d+$")


def _read_tsv(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=True, na_values=["NaN", "nan"])


def _best_flags(values: list[float], higher_better: bool) -> list[bool]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return [False] * len(values)
    best = max(finite) if higher_better else min(finite)
    return [v is not None and math.isfinite(v) and np.isclose(v, best, rtol=0, atol=1e-12) for v in values]


# ----------------------------------------------------------------------------- cells
def summary(values: pd.Series | np.ndarray | list[float]) -> tuple[float, float, int, int]:
    """(mean, SD with ddof 0, number of defined values, number of values)."""
    arr = np.asarray(values, dtype=np.float64)
    ok = arr[np.isfinite(arr)]
    if ok.size == 0:
        return float("nan"), float("nan"), 0, int(arr.size)
    return float(ok.mean()), float(ok.std()), int(ok.size), int(arr.size)


def format_cell(mean: float, std: float | None, k: int, n: int, digits: int) -> str:
    """``mean ± std`` (or ``mean``), ``(k/n)`` when some values are undefined, ``n/a`` when none are."""
    if k == 0 or not math.isfinite(mean):
        return "n/a"
    text = f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text if k == n else f"{text} ({k}/{n})"


# ----------------------------------------------------------------------------- builders
def _primary_rows(det: pd.DataFrame) -> pd.DataFrame:
    if det.empty:
        return det
    primary = det["primary"].astype(str).str.lower().isin(["true", "1"])
    if primary.any():
        return det[primary]
    names = list(dict.fromkeys(det["score_name"]))
    return det[det["score_name"] == ("mask_size" if "mask_size" in names else names[0])]


def detection_table(metrics: dict[str, list[str]]) -> tuple[list[str], list[list[str]], pd.DataFrame, list[str]]:
    """Header, formatted rows (best bold-marked with ``**``), numeric CSV frame, missing experiments."""
    frames, missing = {}, []
    for exp, paths in metrics.items():
        det = _primary_rows(_read_tsv(paths[1]))
        det = det[~det["anomaly"].astype(str).str.match(SEVERITY)] if not det.empty else det
        if det.empty:
            missing.append(exp)
        else:
            frames[exp] = det
    anomalies: list[str] = []
    for det in frames.values():
        anomalies += [a for a in det["anomaly"] if a not in anomalies]
    anomalies = [a for a in anomalies if a != "all"] + (["all"] if "all" in anomalies else [])
    header = ["Experiment", "Score", "n neg/pos"] + [f"{a} {label}" for a in anomalies for _, label, _ in DETECTION]
    values = {exp: [] for exp in frames}
    csv_rows = []
    for exp, det in frames.items():
        by = det.set_index("anomaly")
        rec: dict[str, Any] = {"experiment": exp, "score_name": det["score_name"].iloc[0],
                               "n_neg": int(det["n_neg"].max())}
        for a in anomalies:
            for key, _, _ in DETECTION:
                v = float(by.at[a, key]) if a in by.index else float("nan")
                values[exp].append(v)
                rec[f"{a}_{key}"] = v
            rec[f"{a}_n_pos"] = int(by.at[a, "n_pos"]) if a in by.index else 0
        csv_rows.append(rec)
    exps = list(frames)
    cells = {exp: [] for exp in exps}
    for j in range(len(anomalies) * len(DETECTION)):
        higher = DETECTION[j % len(DETECTION)][2]
        col = [values[e][j] for e in exps]
        for e, v, b in zip(exps, col, _best_flags(col, higher)):
            text = format_cell(v, None, int(math.isfinite(v)), 1, 3)
            cells[e].append(f"**{text}**" if b and len(exps) > 1 else text)
    rows = []
    for exp, det in frames.items():
        n_pos = det["n_pos"].astype(int)
        pos = str(n_pos.min()) if n_pos.min() == n_pos.max() else f"{n_pos.min()}-{n_pos.max()}"
        rows.append([exp, str(det["score_name"].iloc[0]), f"{int(det['n_neg'].max())}/{pos}"] + cells[exp])
    return header, rows, pd.DataFrame(csv_rows), missing


def segmentation_table(
    metrics: dict[str, list[str]], by_size: bool = False
) -> tuple[list[str], list[list[str]], pd.DataFrame, list[str]]:
    """Header, formatted rows (best within each protocol bold-marked), numeric CSV frame, missing."""
    frames, missing = {}, []
    for exp, paths in metrics.items():
        seg = _read_tsv(paths[0])
        (missing.append(exp) if seg.empty else frames.__setitem__(exp, seg))
    columns = [(key, label, higher, digits) for key, label, higher, digits in SEGMENTATION]
    header = ["Experiment", "Protocol", "n"] + [c[1] for c in columns]
    if by_size:
        header += [f"Dice {c}" for c in SIZE_CLASSES]
    protocols = [p for p in PROTOCOL_ORDER if any(p in set(f["protocol"]) for f in frames.values())]
    protocols += sorted({p for f in frames.values() for p in f["protocol"]} - set(protocols))
    rows, csv_rows = [], []
    for protocol in protocols:
        group = [(exp, f[f["protocol"] == protocol]) for exp, f in frames.items() if (f["protocol"] == protocol).any()]
        stats = []
        for exp, df in group:
            s = [summary(df[key]) for key, *_ in columns]
            if by_size:
                s += [summary(df.loc[df["size_class"] == c, "dice"]) for c in SIZE_CLASSES]
            stats.append(s)
        kinds = [(higher, digits) for _, _, higher, digits in columns] + ([(True, 3)] * 3 if by_size else [])
        best = [_best_flags([st[j][0] for st in stats], kinds[j][0]) for j in range(len(kinds))]
        for i, (exp, df) in enumerate(group):
            n = int(df["subject"].nunique())
            cells = []
            for j, (mean, std, k, total) in enumerate(stats[i]):
                text = format_cell(mean, std, k, total, kinds[j][1])
                if j >= len(columns):  # size classes: show how many subjects are in the class
                    text = "n/a" if total == 0 else (text if k < total else f"{text} (n={total})")
                cells.append(f"**{text}**" if best[j][i] and len(group) > 1 else text)
            rows.append([exp, protocol, str(n)] + cells)
            rec: dict[str, Any] = {"experiment": exp, "protocol": protocol, "n": n}
            names = [c[0] for c in columns] + ([f"dice_{c}" for c in SIZE_CLASSES] if by_size else [])
            for name, (mean, std, k, _) in zip(names, stats[i]):
                rec.update({f"{name}_mean": mean, f"{name}_std": std, f"{name}_n": k})
            csv_rows.append(rec)
    return header, rows, pd.DataFrame(csv_rows), missing


# ----------------------------------------------------------------------------- rendering
def _markdown(title: str, caption: str, header: list[str], rows: list[list[str]], note: str) -> str:
    lines = [f"# {title}", ""]
    if caption:
        lines += [caption, ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * len(header)) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines + ["", note, ""])


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$")


def _tex_cell(cell: str) -> str:
    if cell.startswith("**") and cell.endswith("**"):
        return r"\textbf{" + _tex_escape(cell[2:-2]) + "}"
    return _tex_escape(cell)


def _latex(name: str, caption: str, header: list[str], rows: list[list[str]], note: str) -> str:
    spec = "ll" + "r" * (len(header) - 2)
    lines = [r"\begin{table}[ht]", r"\centering", r"\small",
             r"\caption{" + _tex_escape(caption or name) + " " + _tex_escape(note) + "}",
             r"\label{tab:" + name.replace("_", "-") + "}",
             r"\begin{tabular}{" + spec + "}", r"\toprule",
             " & ".join(_tex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex_cell(c) for c in r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def make_table(
    name: str,
    kind: str,
    metrics: dict[str, list[str]],
    out_md: str,
    out_csv: str,
    out_tex: str,
    *,
    caption: str,
) -> None:
    """Stage: build table ``name`` of ``kind`` from experiment -> [segmentation.tsv, detection.tsv]."""
    if kind not in KINDS:
        raise ValueError(f"unknown table kind '{kind}', expected one of {list(KINDS)}")
    if kind == "detection":
        header, rows, frame, missing = detection_table(metrics)
        note = ("Primary detection score per experiment; n neg/pos = healthy test scans / scans per "
                "anomaly. Bold: best per column (AUROC, AUPRC higher; FPR, FNR lower).")
    else:
        header, rows, frame, missing = segmentation_table(metrics, by_size=(kind == "segmentation_2d"))
        note = ("Mean ± SD over n test subjects; (k/n) = metric defined for k of n subjects. Bold: best per "
                "column within a protocol (ASSD lower, others higher).")
    if missing:
        note += " No rows (left out): " + ", ".join(missing) + "."
    if not rows:
        note += " No experiment has data for this table."
    write_text(out_md, _markdown(name, caption, header, rows, note))
    from itermask.io.atomic import atomic_path

    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False, na_rep="NaN", float_format="%.6g")
    write_text(out_tex, _latex(name, caption, header, rows, note))
