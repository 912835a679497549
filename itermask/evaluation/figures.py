"""Figures of one experiment (PNG, written atomically): overlays, threshold curves, ROC curves,
severity sweeps (IterMask3D Fig. 5 style) and parameter sensitivity (Fig. 3 style).

Only data from the inference folders and the metric TSVs are drawn; a figure whose data are
absent is not written (and not returned).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from itermask.config.conditions import LESION, NON_ANOMALY  # noqa: E402
from itermask.errors import InputError  # noqa: E402
from itermask.io.atomic import atomic_dir, save_figure  # noqa: E402
from itermask.evaluation.detection import SEVERITY  # noqa: E402
from itermask.evaluation.scans import Scan, discover, input_image  # noqa: E402

log = logging.getLogger(__name__)


def _arr(path: Path, dtype: type = np.float32) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=dtype)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# ----------------------------------------------------------------------------- overlays
def overlay_figure(scan: Scan, thresholds: dict[str, float], out_png: str) -> str:
    """Input image, error map, final masks and ground truth on the slice with most lesion."""
    f = scan.folder
    error = _arr(f / "error.nii.gz")
    brain = _arr(f / "brainmask.nii.gz", np.uint8) > 0
    label = _arr(f / "label.nii.gz", np.uint8) > 0
    mask = _arr(f / "mask.nii.gz", np.uint8) > 0 if (f / "mask.nii.gz").exists() else np.zeros_like(brain)  # AE/DAE
    image = input_image(scan, error.shape)
    title0 = "input"
    if image is None:
        image, title0 = _arr(f / "recon.nii.gz"), "reconstruction (input unavailable)"
    k = int(np.argmax(label.sum(axis=(0, 1))))
    sl = (slice(None), slice(None), k)
    show = lambda a: np.rot90(a[sl])  # noqa: E731  RAS: anterior up, right on the left of the screen
    fig, ax = plt.subplots(1, 4, figsize=(13, 3.6))
    ax[0].imshow(show(image), cmap="gray")
    ax[0].set_title(title0)
    im = ax[1].imshow(show(np.where(brain, error, 0)), cmap="inferno")
    fig.colorbar(im, ax=ax[1], fraction=0.046)
    ax[1].set_title("error map E")
    ax[2].imshow(show(image), cmap="gray")
    ax[2].contour(show(mask.astype(float)), levels=[0.5], colors="yellow", linewidths=1)
    legend = ["iterative mask (yellow)"]
    for (name, theta), color in zip(thresholds.items(), ["cyan", "magenta", "lime"]):
        if np.isfinite(theta):
            ax[2].contour(show((brain & (error > theta)).astype(float)), levels=[0.5], colors=color, linewidths=1)
            legend.append(f"{name} θ={theta:.3g} ({color})")
    ax[2].set_title("final masks", fontsize=9)
    ax[2].text(0.01, 0.01, "\n".join(legend), transform=ax[2].transAxes, color="w", fontsize=6, va="bottom",
               bbox={"facecolor": "black", "alpha": 0.6, "pad": 2})
    ax[3].imshow(show(image), cmap="gray")
    ax[3].contour(show(label.astype(float)), levels=[0.5], colors="red", linewidths=1)
    ax[3].set_title("ground truth")
    for a in ax:
        a.axis("off")
    fig.suptitle(f"{scan.dataset} sub-{scan.subject}, axial index {k}")
    save_figure(fig, out_png, dpi=110, bbox_inches="tight")
    return out_png


# ----------------------------------------------------------------------------- threshold curves
def _curve(result: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(t, T) of result.json's ``curve``; t = fit ``t`` or ``percents`` when they match, else 1..n."""
    c = result.get("curve", result.get("threshold_curve"))
    if not c:
        return None
    y = np.asarray([np.nan if v is None else v for v in c], float)
    for t in ((result.get("fit") or {}).get("t"), result.get("percents")):
        if t is not None and len(t) == y.size:
            return np.asarray(t, float), y
    return np.arange(1, y.size + 1, dtype=float), y


def threshold_curve_figure(scans: list[Scan], out_png: str) -> str | None:
    """Phase-A threshold curves T(t) with the fitted a·tan(b·t) and τ, one panel per clean
    (val / healthy) or lesion scan; artefact scans are left out to keep the grid readable."""
    items = [(s, _curve(s.result)) for s in scans if s.condition in (*NON_ANOMALY, LESION)]
    items = [(s, c) for s, c in items if c is not None]
    if not items:
        return None
    n = len(items)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for a, (s, (t, y)) in zip(axes.ravel(), items):
        a.plot(t, y, ".", ms=3, label="T(t)")
        fit = s.result.get("fit") or {}
        if fit.get("a") is not None and fit.get("b") is not None:
            tt = np.linspace(t.min(), t.max(), 200)
            with np.errstate(all="ignore"):
                yy = float(fit["a"]) * np.tan(float(fit["b"]) * tt)
            lim = np.nanmax(np.abs(y)) * 1.5 if np.isfinite(y).any() else 1
            a.plot(tt, np.where(np.abs(yy) < lim, yy, np.nan), "-", lw=1, label="a·tan(b·t)")
        tau = s.result.get("tau")
        if tau is not None and np.isfinite(float(tau)):
            a.axhline(float(tau), color="r", lw=0.8, ls="--", label=f"τ={float(tau):.3g}")
        t_star = fit.get("t_star")
        if t_star is not None and np.isfinite(float(t_star)):
            a.axvline(float(t_star), color="gray", lw=0.8, ls=":")
        a.set_title(f"sub-{s.subject} / {s.condition}", fontsize=8)
        a.set_xlabel("phase-A step t")
        a.legend(fontsize=6)
    for a in axes.ravel()[n:]:
        a.axis("off")
    fig.tight_layout()
    save_figure(fig, out_png, dpi=100, bbox_inches="tight")
    return out_png


# ----------------------------------------------------------------------------- detection
def _primary(scores: pd.DataFrame) -> pd.DataFrame:
    """The rows of the primary score (of the first score named when none is marked primary)."""
    if scores.empty:
        return scores
    p = scores["primary"].astype(str).str.lower().isin(["true", "1"])
    return scores[p] if p.any() else scores[scores["score_name"] == scores["score_name"].iloc[0]]


def roc_figure(scores: pd.DataFrame, experiment: str, out_png: str) -> str | None:
    """ROC curves of the primary score, healthy test scans vs each plain anomaly."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if scores.empty:
        return None
    df = _primary(scores[scores["role"] == "test"])
    neg = df[df["label"] == 0]["score"].to_numpy()
    conds = [c for c in dict.fromkeys(df[df["label"] == 1]["condition"]) if not SEVERITY.match(c)]
    if neg.size == 0 or not conds:
        return None
    fig, ax = plt.subplots(figsize=(5, 5))
    for c in conds:
        pos = df[df["condition"] == c]["score"].to_numpy()
        y = np.r_[np.zeros(neg.size), np.ones(pos.size)]
        s = np.r_[neg, pos]
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, drawstyle="steps-post", label=f"{c} (AUROC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(f"{experiment}: {df['score_name'].iloc[0]} (n neg = {neg.size})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, out_png, dpi=110, bbox_inches="tight")
    return out_png


def severity_figure(scores: pd.DataFrame, experiment: str, out_png: str) -> str | None:
    """AUROC and score distribution against severity level for ``<type>-s<k>`` conditions."""
    from sklearn.metrics import roc_auc_score

    if scores.empty:
        return None
    df = _primary(scores[scores["role"] == "test"])
    neg = df[df["label"] == 0]["score"].to_numpy()
    levels: dict[str, list[tuple[int, np.ndarray]]] = {}
    for c in dict.fromkeys(df["condition"]):
        m = SEVERITY.match(c)
        if m:
            levels.setdefault(m["type"], []).append((int(m["level"]), df[df["condition"] == c]["score"].to_numpy()))
    if not levels or neg.size == 0:
        return None
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for kind, items in sorted(levels.items()):
        items.sort()
        ks = [k for k, _ in items]
        auc = [roc_auc_score(np.r_[np.zeros(neg.size), np.ones(p.size)], np.r_[neg, p]) for _, p in items]
        ax[0].plot(ks, auc, "o-", label=kind)
        ax[1].errorbar(ks, [p.mean() for _, p in items], yerr=[p.std() for _, p in items], fmt="o-", capsize=3, label=kind)
    ax[0].set_ylabel("AUROC vs healthy test scans")
    ax[0].set_ylim(0, 1.02)
    ax[1].axhline(neg.mean(), color="k", ls=":", lw=0.8, label="healthy mean")
    ax[1].set_ylabel(f"{df['score_name'].iloc[0]} (mean ± SD)")
    from matplotlib.ticker import MaxNLocator

    for a in ax:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlabel("severity level k (config artefacts.severity)")
        a.legend(fontsize=7)
    fig.suptitle(f"{experiment}: severity sweeps")
    save_figure(fig, out_png, dpi=110, bbox_inches="tight")
    return out_png


# ----------------------------------------------------------------------------- stages
def make_figures(
    experiment: str, runs: Sequence[tuple[str, str, str | Path]], segmentation_tsv: str, scores_tsv: str,
    out_dir: str,
) -> list[str]:
    """Stage: write every figure whose data exist for one experiment; returns their paths.
    ``runs``: (dataset, subject, inference folder) of every subject the experiment ran on. The
    folder is filled under a temporary name and renamed whole (no partial folder after a kill)."""
    scans = discover(runs)
    seg = pd.read_csv(segmentation_tsv, sep="\t")
    scores = pd.read_csv(scores_tsv, sep="\t")
    written: list[str] = []
    with atomic_dir(out_dir) as out:
        for s in scans:
            if s.condition != LESION or not (s.folder / "label.nii.gz").exists():
                continue
            rows = seg[(seg["subject"].astype(str) == s.subject) & (seg["dataset"].astype(str) == s.dataset)]
            th = {r.protocol: float(r.threshold) for r in rows.itertuples() if r.protocol != "iterative_mask"}
            written.append(overlay_figure(s, th, str(out / f"overlay_{_safe(s.dataset)}_sub-{_safe(s.subject)}.png")))
        for path in (
            threshold_curve_figure(scans, str(out / "threshold_curves.png")),
            roc_figure(scores, experiment, str(out / "roc.png")),
            severity_figure(scores, experiment, str(out / "severity.png")),
        ):
            if path is not None:
                written.append(path)
    return [str(Path(out_dir) / Path(p).name) for p in written]


def sensitivity_figure(
    segmentation_tsvs: dict[str, str],
    values: dict[str, float],
    parameter: str,
    out_png: str,
    *,
    protocol: str,
    metric: str = "dice",
) -> str | None:
    """Fig. 3 style: ``metric`` (mean ± SD over subjects) of experiments that differ in one
    setting (e.g. τ percentile, HF radius r), plotted against the setting's value.

    ``segmentation_tsvs``: experiment -> segmentation.tsv; ``values``: experiment -> value.
    """
    pts = []
    for exp, path in segmentation_tsvs.items():
        df = pd.read_csv(path, sep="\t")
        v = df[df["protocol"] == protocol][metric].astype(float)
        v = v[np.isfinite(v)]
        if exp in values and v.size:
            pts.append((float(values[exp]), float(v.mean()), float(v.std()), exp))
    if not pts:
        return None
    pts.sort()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], fmt="o-", capsize=3)
    ax.set_xlabel(parameter)
    ax.set_ylabel(f"{metric} ({protocol}), mean ± SD")
    save_figure(fig, out_png, dpi=110, bbox_inches="tight")
    return out_png


def primary_protocol(protocols: Sequence[str]) -> str:
    """The protocol of a one-protocol figure: ``honest`` when evaluated, else the first configured."""
    return "honest" if "honest" in protocols else protocols[0]


def sensitivity_stage(segmentation_tsvs: dict[str, str], values: dict[str, float], parameter: str, out_png: str,
                      *, protocols: Sequence[str], logger: logging.Logger = log) -> str:
    """Stage (rule sensitivity): `sensitivity_figure` of the Dice under the primary protocol of
    ``protocols``; InputError when no experiment has a finite Dice under it."""
    protocol = primary_protocol(protocols)
    logger.info("%s: %s (protocol %s)", parameter, values, protocol)
    if sensitivity_figure(segmentation_tsvs, values, parameter, out_png, protocol=protocol, metric="dice") is None:
        raise InputError(f"no finite Dice under protocol '{protocol}' in any of {sorted(segmentation_tsvs.values())}")
    return out_png
