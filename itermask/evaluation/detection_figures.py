"""Detection figures (ROC curves, severity sweeps in the IterMask3D Fig. 5 style) and the
parameter-sensitivity figure (Fig. 3 style), per test dataset; each PNG with its data as
``<stem>.csv`` (columns in figure_data). A figure without data is not written: the reason is logged.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from itermask.config.conditions import LESION, NON_ANOMALY  # noqa: E402
from itermask.evaluation.detection import SEVERITY, dataset_members  # noqa: E402
from itermask.evaluation.figure_data import (  # noqa: E402
    csv_beside, roc_points, sensitivity_points, severity_points, write_csv,
)
from itermask.io.atomic import save_figure  # noqa: E402

log = logging.getLogger(__name__)

METRIC_NAMES = {"dice": "Dice"}
PARAMETER_NAMES = {"tau_percentile": "τ percentile (tau_percentile)", "hf_radius": "HF radius r (hf_radius)",
                   "gamma": "γ (gamma)"}


def skip_reason(scores: pd.DataFrame, want: str) -> str:
    """Why the scores give no ROC (``want`` 'plain') or severity ('severity') curve."""
    test = scores[scores["role"] == "test"] if not scores.empty else scores
    if test.empty:
        return "no test-scan scores (validation scans only, or none)"
    if not dataset_members(test):
        return "no healthy test scans (detection negatives) in any test dataset"
    conds = [c for c in dict.fromkeys(test["condition"]) if c not in NON_ANOMALY and c != LESION]
    if want == "severity":
        return "" if any(SEVERITY.match(c) for c in conds) else "no severity-level conditions '<type>-s<k>'"
    return "" if any(not SEVERITY.match(c) for c in conds) else \
        "no plain anomaly condition (lesion scans and severity levels are not ROC curves)"


def roc_figure(scores: pd.DataFrame, experiment: str, out_png: str, *, logger: logging.Logger = log) -> str | None:
    """ROC curves of the primary score, one panel per test dataset, one curve per plain anomaly
    against that dataset's healthy test scans (AUROC in the legend = the detection table's)."""
    pts = roc_points(scores)
    if pts.empty:
        logger.info("skipped %s: %s", Path(out_png).name, skip_reason(scores, "plain"))
        return None
    datasets = list(dict.fromkeys(pts["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 5), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        sub = pts[pts["dataset"] == d]
        for c, g in sub.groupby("anomaly", sort=False):
            ax.plot(g["fpr"], g["tpr"], "-", lw=1.2,
                    label=f"{c} (AUROC {g['auroc'].iloc[0]:.3f}, n = {g['n_pos'].iloc[0]})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_title(f"{d}: {sub['score_name'].iloc[0]} (n healthy = {sub['n_neg'].iloc[0]})", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{experiment}: ROC per test dataset", fontsize=10)
    write_csv(pts, csv_beside(out_png))
    save_figure(fig, out_png, dpi=110, bbox_inches="tight")
    return out_png


def _severity_column(ax: Any, sub: pd.DataFrame, kind: str) -> None:
    """AUROC (top) and score (bottom) against the swept parameter of one artefact type."""
    by_level = (sub["parameter"] == "level").any()
    xcol, xlabel = ("level", "severity level k") if by_level else ("value", str(sub["parameter"].iloc[0]))
    for d, g in sub.groupby("dataset", sort=False):
        line, = ax[0].plot(g[xcol], g["auroc"], "o-", label=d)
        ax[1].errorbar(g[xcol], g["score_mean"], yerr=g["score_sd"], fmt="o-", capsize=3, color=line.get_color(),
                       label=d)
        ax[1].axhline(g["healthy_mean"].iloc[0], color=line.get_color(), ls=":", lw=0.8, label=f"{d} healthy mean")
    ax[0].set_title(kind)
    ax[0].set_ylim(0, 1.02)
    ax[0].set_ylabel("AUROC vs healthy test scans")
    ax[1].set_ylabel(f"{sub['score_name'].iloc[0]} (mean ± SD)")
    ticks = sorted(set(sub[xcol]))
    for a in ax:
        a.set_xticks(ticks)
        a.set_xticklabels([f"{v:g}" for v in ticks], fontsize=7)
        a.set_xlabel(xlabel)
        a.legend(fontsize=6)


def severity_figure(scores: pd.DataFrame, experiment: str, out_png: str, *, severity: Mapping[str, Any] | None = None,
                    logger: logging.Logger = log) -> str | None:
    """AUROC and score against the swept parameter's value (``severity``: config
    ``artefacts.severity``) of the ``<type>-s<k>`` conditions: one column per artefact type,
    one line per test dataset."""
    pts = severity_points(scores, severity, logger)
    if pts.empty:
        logger.info("skipped %s: %s", Path(out_png).name, skip_reason(scores, "severity"))
        return None
    kinds = list(dict.fromkeys(pts["artefact"]))
    fig, ax = plt.subplots(2, len(kinds), figsize=(4.2 * len(kinds), 7), squeeze=False)
    for j, kind in enumerate(kinds):
        _severity_column(ax[:, j], pts[pts["artefact"] == kind], kind)
    fig.suptitle(f"{experiment}: severity sweeps")
    fig.tight_layout()
    write_csv(pts, csv_beside(out_png))
    save_figure(fig, out_png, dpi=110, bbox_inches="tight")
    return out_png


def sensitivity_figure(
    segmentation_tsvs: Mapping[str, str], values: Mapping[str, float], parameter: str, out_png: str, *,
    protocol: str, metric: str = "dice", experiment: str | None = None, out_csv: str | None = None,
    logger: logging.Logger = log,
) -> str | None:
    """Fig. 3 style: ``metric`` (mean ± SD over subjects) of experiments that differ in one
    setting, against the setting's value, one line per test dataset; the points as ``out_csv``
    (default ``<stem>.csv``). ``segmentation_tsvs``: experiment -> segmentation.tsv;
    ``values``: experiment -> value. None (nothing written) without a finite value."""
    for exp in values:
        if exp not in segmentation_tsvs:
            logger.warning("sensitivity %s: no segmentation TSV for %s; not plotted", parameter, exp)
    pts = sensitivity_points(segmentation_tsvs, values, parameter, protocol=protocol, metric=metric, logger=logger)
    if pts.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for d, g in pts.groupby("dataset", sort=False):
        line, = ax.plot(g["value"], g["mean"], "o-", label=f"{d}")
        ok = np.isfinite(g["sd"].to_numpy()) & (g["n"].to_numpy() > 1)  # no error bar from one subject
        if ok.any():
            ax.errorbar(g["value"][ok], g["mean"][ok], yerr=g["sd"][ok], fmt="none", ecolor=line.get_color(), capsize=3)
    ax.set_xlabel(PARAMETER_NAMES.get(parameter, parameter))
    ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)}, {protocol} protocol (mean ± SD)")
    ax.set_xticks(sorted(set(pts["value"])))
    ax.set_title(experiment or f"sensitivity to {parameter}", fontsize=10)
    ax.legend(fontsize=7, title="test dataset", title_fontsize=7)
    write_csv(pts, out_csv or csv_beside(out_png))
    save_figure(fig, out_png, dpi=110, bbox_inches="tight")
    return out_png
