"""The cells of a printed table (itermask.evaluation.spec) from the metric TSVs of its experiments.

A segmentation cell: the subjects of the block's test dataset under the row's protocol, mean ±
SD (ddof 0) of the defined values, in the papers' units (spec.METRICS), with k of n defined.
A detection cell: the primary detection score's metric for the block's anomaly against the
healthy test scans of the block's test dataset. Nothing comes from published numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from itermask.config.conditions import HEALTHY
from itermask.evaluation.detection import dataset_members
from itermask.evaluation.spec import LEFT_OUT, METRICS, row_cells, row_protocol

SIZE_METRICS = {"dice_small": "small", "dice_medium": "medium", "dice_large": "large"}


@dataclass
class Cell:
    mean: float = float("nan")
    sd: float = float("nan")
    k: int = 0
    n: int = 0
    absent: bool = False  # "–": the row has no experiment for this block


@dataclass
class Row:
    label: str
    grey: bool
    protocol: str
    oracle: set[str] = field(default_factory=set)  # per_image_best sources seen (evaluate.py column oracle)
    threshold_sources: set[str] = field(default_factory=set)  # shared thresholds' sources (column threshold_source)
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)  # block key -> metric -> cell
    # (experiment, block dataset; None for a detection table's scans) -> (converged, scans, fewest,
    # most iterations) of its iterative masks, and (tau at the curve's first point, subject-specific taus)
    convergence: dict[tuple[str, str | None], tuple[int, int, int, int, int, int]] = field(default_factory=dict)
    left_out: dict[str, set[str]] = field(default_factory=dict)  # block dataset -> subjects without a result
    left_out_reasons: set[str] = field(default_factory=set)
    scans: dict[str, tuple[int, int]] = field(default_factory=dict)  # detection block -> (anomalous, healthy) scans
    # (experiment, block dataset) -> (mean fraction of the brain, scans) of a diffusion baseline's inpainting mask
    inpainting: dict[tuple[str, str | None], tuple[float, int]] = field(default_factory=dict)


def read_tsv(path: str) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=True, na_values=["NaN", "nan"])


def summarise(values: Any, factor: float) -> Cell:
    arr = np.asarray(values, dtype=np.float64) * factor
    ok = arr[np.isfinite(arr)]
    if ok.size == 0:
        return Cell(n=int(arr.size))
    return Cell(float(ok.mean()), float(ok.std()), int(ok.size), int(arr.size))


def primary_rows(det: pd.DataFrame) -> pd.DataFrame:
    if det.empty:
        return det
    primary = det["primary"].astype(str).str.lower().isin(["true", "1"])
    return det[primary] if primary.any() else det[det["score_name"] == det["score_name"].iloc[0]]


def _block_rows(seg: pd.DataFrame, protocol: str, block: dict) -> pd.DataFrame:
    """The rows of ``protocol`` on the block's test dataset (all datasets when it names none)."""
    df = seg[seg["protocol"] == protocol]
    return df if block["dataset"] is None else df[df["dataset"].astype(str) == block["dataset"]]


def _segmentation_cells(seg: pd.DataFrame, protocol: str, block: dict, metrics: list[str]) -> dict[str, Cell]:
    df = _block_rows(seg, protocol, block)
    out = {}
    for m in metrics:
        if m in SIZE_METRICS:
            out[m] = summarise(df.loc[df["size_class"] == SIZE_METRICS[m], "dice"], METRICS[m][2])
        else:
            out[m] = summarise(df[m], METRICS[m][2])
    return out


def _convergence(df: pd.DataFrame) -> tuple[int, int, int, int, int, int] | None:
    """(converged, scans, fewest, most iterations, tau at the curve's first point, scans with a
    subject-specific tau) of the iterative masks of ``df``'s scans (evaluate.py columns
    converged / iterations / tau_at_first_point); None for a method without iterations."""
    if "converged" not in df:
        return None
    first = pd.to_numeric(df["tau_at_first_point"], errors="coerce").dropna() if "tau_at_first_point" in df \
        else pd.Series(dtype=float)
    conv = pd.to_numeric(df["converged"], errors="coerce")
    its = pd.to_numeric(df["iterations"], errors="coerce")[conv.notna()].dropna()
    conv = conv.dropna()
    if conv.empty:
        return None
    lo, hi = (int(its.min()), int(its.max())) if not its.empty else (0, 0)
    return int((conv > 0.5).sum()), int(conv.size), lo, hi, int((first > 0.5).sum()), int(first.size)


def _inpainting(df: pd.DataFrame) -> tuple[float, int] | None:
    """(mean, scans) of evaluate.py's ``inpainting_mask_fraction`` column; None without values."""
    if "inpainting_mask_fraction" not in df:
        return None
    frac = pd.to_numeric(df["inpainting_mask_fraction"], errors="coerce").dropna()
    return (float(frac.mean()), int(frac.size)) if not frac.empty else None


def _detection_scans(scores: pd.DataFrame, block: dict) -> pd.DataFrame:
    """The test scans behind a detection cell, one line per scan (evaluate.py scores.tsv): the
    block's anomaly (every anomaly when it names none) and the healthy scans it is compared with;
    a dataset without healthy scans joins the one that has them, as in detection.detection_rows."""
    df = scores[scores["role"].astype(str) == "test"]
    if block["dataset"] is not None:
        df = df[df["dataset"].astype(str).isin(dataset_members(df).get(block["dataset"], [block["dataset"]]))]
    if block["anomaly"] is not None:
        df = df[df["condition"].astype(str).isin([block["anomaly"], HEALTHY])]
    return df.drop_duplicates(["dataset", "subject", "condition"])


def _detection_cells(det: pd.DataFrame, block: dict, metrics: list[str]) -> tuple[dict[str, Cell], tuple[int, int] | None]:
    """The block's cells, and its (anomalous, healthy) scan counts (None without a row)."""
    df = primary_rows(det)
    if block["dataset"] is not None and not df.empty:
        df = df[df["dataset"].astype(str) == block["dataset"]]
    df = df[df["anomaly"].astype(str) == (block["anomaly"] or "all")] if not df.empty else df
    if df.empty:
        return {m: Cell() for m in metrics}, None
    r = df.iloc[0]
    return {m: summarise([r[m]], METRICS[m][2]) for m in metrics}, (int(r["n_pos"]), int(r["n_neg"]))


def build(spec: dict[str, Any], metrics: dict[str, list[str]]) -> list[Row]:
    """Rows of table ``spec`` from experiment -> [segmentation.tsv, detection.tsv, scores.tsv]
    (scores.tsv optional: a detection table counts its iterative masks' convergence from it)."""
    frames: dict[str, pd.DataFrame] = {}
    score_frames: dict[str, pd.DataFrame] = {}
    detection = spec["kind"] == "detection"
    column = 1 if detection else 0
    rows = []
    for r in spec["rows"]:
        row = Row(r["label"], bool(r["grey"]), "" if detection else row_protocol(spec, r))  # no θ in detection
        cells = row_cells(spec, r)
        scans: dict[str, list[pd.DataFrame]] = {}  # detection: experiment -> its blocks' scans
        for block in spec["blocks"]:
            exp = cells.get(block["key"])
            if exp is None:
                row.cells[block["key"]] = {m: Cell(absent=True) for m in spec["metrics"]}
                continue
            if exp not in frames:
                frames[exp] = read_tsv(metrics[exp][column])
            if detection:
                row.cells[block["key"]], counts = _detection_cells(frames[exp], block, spec["metrics"])
                if counts is not None:
                    row.scans[block["key"]] = counts
                if len(metrics[exp]) > 2:
                    if exp not in score_frames:
                        score_frames[exp] = read_tsv(metrics[exp][2])
                    scans.setdefault(exp, []).append(_detection_scans(score_frames[exp], block))
            else:
                seg = frames[exp]
                row.cells[block["key"]] = _segmentation_cells(seg, row.protocol, block, spec["metrics"])
                if row.protocol == "per_image_best" and "oracle" in seg:
                    row.oracle |= set(seg.loc[seg["protocol"] == row.protocol, "oracle"].dropna().astype(str))
                gone = _block_rows(seg, LEFT_OUT, block)
                if not gone.empty:
                    row.left_out.setdefault(str(block["dataset"]), set()).update(gone["subject"].astype(str))
                    row.left_out_reasons |= set(gone["threshold_source"].dropna().astype(str))
                own = _block_rows(seg, row.protocol, block)
                conv = _convergence(own)
                if conv is not None:
                    row.convergence[(exp, block["dataset"])] = conv
                inpainting = _inpainting(own)
                if inpainting is not None:
                    row.inpainting[(exp, block["dataset"])] = inpainting
                if "threshold_source" in seg:
                    found = seg.loc[seg["protocol"] == row.protocol, "threshold_source"].dropna().astype(str)
                    row.threshold_sources |= {f for f in found if f}
        for exp, parts in scans.items():  # each scan once, though blocks share the healthy scans
            conv = _convergence(pd.concat(parts).drop_duplicates(["dataset", "subject", "condition"]))
            if conv is not None:
                row.convergence[(exp, None)] = conv
        rows.append(row)
    return rows


def wide_frame(spec: dict[str, Any], rows: list[Row]) -> pd.DataFrame:
    """One line per row: label, grey, protocol, then ``<block>:<metric>`` means (papers' units)
    and ``<block>:<metric>:sd`` / ``:k`` / ``:n``."""
    records = []
    for row in rows:
        rec: dict[str, Any] = {"row": row.label, "grey": row.grey, "protocol": row.protocol}
        for block in spec["blocks"]:
            for m in spec["metrics"]:
                c = row.cells[block["key"]][m]
                col = f"{block['key']}:{m}"
                rec.update({col: c.mean, f"{col}:sd": c.sd, f"{col}:k": c.k, f"{col}:n": c.n})
        records.append(rec)
    return pd.DataFrame(records)


def best_flags(rows: list[Row], block: str, metric: str) -> list[bool]:
    """Best value of a column among the white (non-grey) rows of one protocol, as the papers
    bold it (a row with another protocol, e.g. an honest-θ row beside the paper's, competes
    only with its own protocol's rows), counting only cells defined for every subject (k = n):
    a mean over fewer subjects is not compared with the others'."""
    higher = METRICS[metric][1]
    flags = [False] * len(rows)
    for protocol in dict.fromkeys(r.protocol for r in rows if not r.grey):
        idx = [i for i, r in enumerate(rows) if not r.grey and r.protocol == protocol]
        values = [c.mean if c.k == c.n else float("nan") for c in (rows[i].cells[block][metric] for i in idx)]
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) < 2:
            continue
        best = max(finite) if higher else min(finite)
        for i, v in zip(idx, values):
            flags[i] = math.isfinite(v) and abs(v - best) < 1e-9
    return flags
