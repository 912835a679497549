"""The numbers the detection and sensitivity figures plot, as tables (written as a CSV beside
each PNG, same stem).

Per (experiment, test dataset), never pooled (METHOD.md §7): the scans of a test dataset are
grouped as detection.py groups them (``dataset_members``: its own scans, plus those of datasets
with anomalous scans only when it is the only one with healthy scans), so a figure's AUROC
equals the detection table's. Summaries over subjects are mean ± SD (ddof 0) of the defined
values, as the printed tables (layout.summarise).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from itermask.config.conditions import LESION, NON_ANOMALY
from itermask.evaluation.detection import SEVERITY, anomaly_order, dataset_members, paired
from itermask.evaluation.layout import primary_rows, summarise
from itermask.evaluation.metrics import detection_metrics
from itermask.io.atomic import write_table

log = logging.getLogger(__name__)

ROC_COLUMNS = ["dataset", "anomaly", "score_name", "n_pos", "n_neg", "auroc", "fpr", "tpr", "threshold"]
SEVERITY_COLUMNS = ["dataset", "artefact", "level", "parameter", "value", "score_name", "n_pos", "n_neg", "auroc",
                    "score_mean", "score_sd", "healthy_mean", "healthy_sd"]
SENSITIVITY_COLUMNS = ["experiment", "parameter", "value", "dataset", "protocol", "metric", "n", "n_subjects",
                       "mean", "sd"]
NO_DATASET = "unknown"  # a segmentation TSV without a dataset column (one unnamed test dataset)


def write_csv(df: pd.DataFrame, path: str | Path) -> str:
    """Write a figure's data atomically (comma-separated, NaN as 'NaN', 10 significant digits)."""
    return write_table(df, path, float_format="%.10g")


def csv_beside(png: str | Path) -> str:
    """The data file of a figure: same folder, same stem, ``.csv``."""
    return str(Path(png).with_suffix(".csv"))


def dataset_groups(scores: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(test dataset, its primary-score test rows) as detection.detection_rows pairs them."""
    test = primary_rows(scores[scores["role"] == "test"]) if not scores.empty else scores
    if test.empty:
        return
    for dataset, members in dataset_members(test).items():
        yield dataset, test[test["dataset"].isin(members)]


def _negatives(df: pd.DataFrame) -> np.ndarray:
    return df[df["label"] == 0]["score"].to_numpy(float)


def roc_points(scores: pd.DataFrame) -> pd.DataFrame:
    """ROC points of the primary score: one curve per (test dataset, plain anomaly), negatives
    the dataset's healthy test scans; lesion scans (segmentation subjects) and severity levels
    ``<type>-s<k>`` (severity figure) are not curves, as in the detection table's AUROC."""
    from sklearn.metrics import roc_curve

    rows = []
    for dataset, df in dataset_groups(scores):
        neg = _negatives(df)
        conds = [c for c in dict.fromkeys(df["condition"]) if c not in NON_ANOMALY]
        for c in anomaly_order(conds):
            if c == LESION or SEVERITY.match(c):
                continue
            pos = df[df["condition"] == c]["score"].to_numpy(float)
            if neg.size == 0 or pos.size == 0:
                continue
            y, s = paired(neg, pos)
            auroc = detection_metrics(y, s)["auroc"]
            fpr, tpr, thr = roc_curve(y, s)
            for f, t, th in zip(fpr, tpr, thr):
                rows.append([dataset, c, str(df["score_name"].iloc[0]), pos.size, neg.size, auroc, f, t, th])
    return pd.DataFrame(rows, columns=ROC_COLUMNS)


def severity_value(sweeps: Mapping[str, Any] | None, kind: str, level: int) -> tuple[str, float]:
    """(parameter name, value) of severity level ``level`` of artefact ``kind`` (config
    ``artefacts.severity``: ``{type: {param, values}}``, as Study.artefact_params reads it);
    ``("level", level)`` when the config does not name it."""
    sweep = (sweeps or {}).get(kind) or {}
    values = list(sweep.get("values") or [])
    if "param" not in sweep or not 0 <= level < len(values):
        return "level", float(level)
    try:
        return str(sweep["param"]), float(values[level])
    except (TypeError, ValueError):
        return "level", float(level)


def severity_points(scores: pd.DataFrame, sweeps: Mapping[str, Any] | None,
                    logger: logging.Logger = log) -> pd.DataFrame:
    """AUROC against the dataset's healthy test scans and the score (mean ± SD) per severity level
    ``<type>-s<k>``, per test dataset, with the swept parameter's name and value."""
    rows, unnamed = [], set()
    for dataset, df in dataset_groups(scores):
        neg = _negatives(df)
        for c in dict.fromkeys(df["condition"]):
            m = SEVERITY.match(c)
            if not m or neg.size == 0:
                continue
            kind, level = m["type"], int(m["level"])
            param, value = severity_value(sweeps, kind, level)
            if param == "level":
                unnamed.add(kind)
            pos = df[df["condition"] == c]["score"].to_numpy(float)
            auroc = detection_metrics(*paired(neg, pos))["auroc"]
            rows.append([dataset, kind, level, param, value, str(df["score_name"].iloc[0]), pos.size, neg.size,
                         auroc, pos.mean(), pos.std(), neg.mean(), neg.std()])
    for kind in sorted(unnamed):
        logger.warning("severity figure: no parameter values for '%s' (config artefacts.severity); its x axis "
                       "shows the level index k", kind)
    out = pd.DataFrame(rows, columns=SEVERITY_COLUMNS)
    return out.sort_values(["artefact", "dataset", "level"], kind="stable").reset_index(drop=True)


def _read_metric(path: str, protocol: str, metric: str, logger: logging.Logger) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t")
    if "dataset" not in df.columns:
        logger.warning("%s has no 'dataset' column: its subjects count as one test dataset '%s'", path, NO_DATASET)
        df["dataset"] = NO_DATASET
    df = df[df["protocol"] == protocol]
    return pd.DataFrame({"dataset": df["dataset"].astype(str), "v": df[metric].astype(float)})


def sensitivity_points(segmentation_tsvs: Mapping[str, str], values: Mapping[str, float], parameter: str, *,
                       protocol: str, metric: str = "dice", logger: logging.Logger = log) -> pd.DataFrame:
    """One row per (sweep value, test dataset): ``metric`` mean ± SD (ddof 0) over the dataset's
    subjects with a finite value (``n`` of ``n_subjects``) under ``protocol``. A sweep member
    without a finite value for a dataset is logged, not a row."""
    tables = {exp: _read_metric(path, protocol, metric, logger) for exp, path in segmentation_tsvs.items()
              if exp in values}
    datasets = list(dict.fromkeys(d for t in tables.values() for d in t["dataset"]))
    rows = []
    for exp, t in tables.items():
        for d in datasets:
            cell = summarise(t.loc[t["dataset"] == d, "v"].to_numpy(), 1.0)
            if cell.k == 0:
                logger.warning("sensitivity %s: %s (%s = %g) has no finite %s under protocol '%s' on %s (%d subjects); "
                               "not plotted", parameter, exp, parameter, float(values[exp]), metric, protocol, d, cell.n)
                continue
            rows.append([exp, parameter, float(values[exp]), d, protocol, metric, cell.k, cell.n, cell.mean, cell.sd])
    if not datasets:
        for exp in tables:
            logger.warning("sensitivity %s: %s has no rows under protocol '%s'; not plotted", parameter, exp, protocol)
    out = pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)
    return out.sort_values(["dataset", "value", "experiment"], kind="stable").reset_index(drop=True)
