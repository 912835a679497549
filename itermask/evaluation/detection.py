"""Detection rows of the evaluation stage (METHOD.md §8): per-scan scores and, per test dataset,
ROC metrics of each anomalous condition against that dataset's healthy test scans.

``score_rows``: one row per scan × score name (``role`` = val/test, ``label`` 1 = anomalous).
``detection_rows``: one row per test dataset × anomaly × score name; negatives = the ``healthy``
test scans of that dataset, positives = its scans of that condition (and those of datasets with
anomalous scans only, e.g. a derived failed-strip set, when exactly one test dataset has healthy
scans) (each artefact name, severity levels ``<type>-s<k>`` and ``lesion`` separately); ``all``
pools the given plain artefact types (no severity levels, no lesion). Validation scans
(``val``, ``val_lesion``) only set thresholds: role ``val``, never in a detection row.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from itermask.config.conditions import HEALTHY, LESION, NON_ANOMALY, VALIDATION
from itermask.evaluation.metrics import detection_metrics
from itermask.evaluation.scans import Scan, convergence, scan_scores, tau_at_first_point

log = logging.getLogger(__name__)

DETECTION_COLUMNS = [
    "experiment", "dataset", "anomaly", "score_name", "primary", "n_pos", "n_neg",
    "auroc", "auprc", "fpr80", "fpr90", "fnr80", "fnr90",
]
SCORE_COLUMNS = ["experiment", "dataset", "subject", "condition", "role", "label", "score_name", "score", "primary",
                 "converged", "iterations", "tau_at_first_point"]
SEVERITY = re.compile(r"^(?P<type>.+)-s(?P<level>\d+)$")


def score_rows(experiment: str, scans: list[Scan], primary: str | None) -> list[dict[str, Any]]:
    """One row per scan x score; ``converged`` / ``iterations``: the scan's iterative mask
    (scans.convergence; NaN for methods without iterations); ``tau_at_first_point``:
    scans.tau_at_first_point."""
    rows = []
    for s in scans:
        converged, iterations = convergence(s)
        first = tau_at_first_point(s)
        for name, value in scan_scores(s).items():
            rows.append({
                "experiment": experiment, "dataset": s.dataset, "subject": s.subject, "condition": s.condition,
                "role": "val" if s.condition in VALIDATION else "test",
                "label": 0 if s.condition in NON_ANOMALY else 1,
                "score_name": name, "score": value, "primary": name == primary,
                "converged": converged, "iterations": iterations, "tau_at_first_point": first,
            })
    return rows


def anomaly_order(conditions: list[str]) -> list[str]:
    plain = [c for c in conditions if not SEVERITY.match(c) and c != LESION]
    levels = sorted((c for c in conditions if SEVERITY.match(c)),
                    key=lambda c: (SEVERITY.match(c)["type"], int(SEVERITY.match(c)["level"])))
    return plain + levels + ([LESION] if LESION in conditions else [])


def paired(neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of one comparison: healthy scans ``neg`` (label 0), then anomalous ``pos`` (1)."""
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    return np.r_[np.zeros(neg.size, int), np.ones(pos.size, int)], np.r_[neg, pos]


def dataset_members(test: pd.DataFrame) -> dict[str, list[str]]:
    """Each test dataset with healthy scans -> the datasets whose scans its detection rows use:
    itself, and, when it is the only one with healthy scans, the datasets of anomalous scans only
    (a derived failed-strip set, a user's anomalous set)."""
    healthy = list(dict.fromkeys(test.loc[test["condition"] == HEALTHY, "dataset"]))
    orphans = [d for d in dict.fromkeys(test["dataset"]) if d not in healthy]
    return {d: [d] + (orphans if len(healthy) == 1 else []) for d in healthy}


def detection_rows(experiment: str, scores: pd.DataFrame, pooled: Sequence[str]) -> list[dict[str, Any]]:
    """Rows per test dataset: negatives and positives of one dataset only, never pooled."""
    rows = []
    test = scores[scores["role"] == "test"]
    groups = dataset_members(test)
    for dataset, members in groups.items():
        rows += _dataset_detection_rows(experiment, dataset, test[test["dataset"].isin(members)], pooled)
    orphans = [d for d in dict.fromkeys(test["dataset"]) if d not in groups]
    if orphans and len(groups) != 1:
        log.warning("%s: datasets %s have no healthy test scans of their own and %d datasets have; "
                    "no detection rows for them", experiment, orphans, len(groups))
    return rows


def _dataset_detection_rows(experiment: str, dataset: str, test: pd.DataFrame,
                            pooled: Sequence[str]) -> list[dict[str, Any]]:
    conditions = list(dict.fromkeys(c for c in test["condition"] if c not in NON_ANOMALY))
    if test.empty or not (test["label"] == 0).any() or not conditions:
        return []
    groups = {c: [c] for c in anomaly_order(conditions)}
    plain = [c for c in conditions if c in pooled and not SEVERITY.match(c)]
    if plain:  # 'all' pools the synthetic artefact types only (not lesions, real artefacts, levels)
        groups["all"] = plain
    rows = []
    for score_name, df in test.groupby("score_name", sort=False):
        neg = df[df["label"] == 0]["score"].to_numpy()
        primary = bool(df["primary"].any())
        for anomaly, conds in groups.items():
            pos = df[df["condition"].isin(conds)]["score"].to_numpy()
            if pos.size == 0 or neg.size == 0:
                continue
            m = detection_metrics(*paired(neg, pos))
            rows.append({"experiment": experiment, "dataset": dataset, "anomaly": anomaly, "score_name": score_name, "primary": primary,
                         "n_pos": int(pos.size), "n_neg": int(neg.size), **m})
    return rows
