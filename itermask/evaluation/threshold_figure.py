"""The phase-A threshold-curve grid of one experiment: one panel per curve, i.e. per IterMask3D
scan (result.json ``curve`` / ``fit``) or per slice of a slice-wise IterMask2 scan with a
subject-specific threshold (``curves`` / ``fits``, one per slice), with the tangent fit (tangent
branch only, clipped before its pole: core.threshold.fitted_line, as the per-subject curve.png), τ and t*.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from itermask.config.conditions import LESION, NON_ANOMALY  # noqa: E402
from itermask.core.threshold import fitted_line, number_or_nan  # noqa: E402
from itermask.evaluation.figure_data import csv_beside, write_csv  # noqa: E402
from itermask.evaluation.scans import Scan  # noqa: E402
from itermask.io.atomic import save_figure  # noqa: E402

log = logging.getLogger(__name__)

MAX_PANELS = 48  # more would be unreadable; the rest are named in the log
CURVE_COLUMNS = ["dataset", "subject", "condition", "slice", "t", "threshold", "fit", "branch", "tau", "t_star"]


@dataclass
class Panel:
    scan: Scan
    slice: int | None  # axial index of a 2D slice (result.json ``slices``), None for a 3D scan
    t: np.ndarray
    y: np.ndarray
    fit: dict[str, Any]
    tau: float

    @property
    def title(self) -> str:
        where = "" if self.slice is None else f", slice {self.slice}"
        return f"{self.scan.dataset} sub-{self.scan.subject} / {self.scan.condition}{where}"


def _t_axis(n: int, fit: dict[str, Any], result: dict[str, Any]) -> np.ndarray:
    """t of a curve: fit ``t`` or ``percents`` when they match its length, else 1..n."""
    for t in (fit.get("t"), result.get("percents")):
        if t is not None and len(t) == n:
            return np.asarray(t, float)
    return np.arange(1, n + 1, dtype=float)


def _values(c: list) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in c], float)


def scan_panels(s: Scan) -> list[Panel]:
    """The curves of one scan: ``curves``/``fits`` (one per slice) or ``curve``/``fit``."""
    r = s.result
    if isinstance(r.get("curves"), list) and r["curves"]:
        fits = r.get("fits") or []
        slices = r.get("slices") or list(range(len(r["curves"])))
        taus = r.get("subject_tau") or []
        out = []
        for i, c in enumerate(r["curves"]):
            fit = fits[i] if i < len(fits) and isinstance(fits[i], dict) else {}
            y = _values(c or [])
            tau = number_or_nan(fit.get("tau", taus[i] if i < len(taus) else None))
            out.append(Panel(s, int(slices[i]) if i < len(slices) else i, _t_axis(y.size, fit, r), y, fit, tau))
        return [p for p in out if p.y.size]
    c = r.get("curve", r.get("threshold_curve"))
    if not c:
        return []
    fit = r.get("fit") if isinstance(r.get("fit"), dict) else {}
    y = _values(c)
    return [Panel(s, None, _t_axis(y.size, fit, r), y, fit, number_or_nan(r.get("tau")))]


def panels_of(scans: list[Scan], logger: logging.Logger = log) -> list[Panel]:
    """Panels of the clean (val / healthy) and lesion scans, at most MAX_PANELS; what is left out
    (artefact scans, panels past the cap) is logged."""
    shown = [s for s in scans if s.condition in (*NON_ANOMALY, LESION)]
    panels = [p for s in shown for p in scan_panels(s)]
    other = [s.condition for s in scans if s.condition not in (*NON_ANOMALY, LESION) and scan_panels(s)]
    if other:
        logger.info("threshold curves: %d scans of conditions %s (not val / healthy / lesion) left out of the grid "
                    "(readability)", len(other), ", ".join(dict.fromkeys(other)))
    if len(panels) > MAX_PANELS:
        rest = [p.title for p in panels[MAX_PANELS:]]
        logger.info("threshold curves: the first %d of %d curves drawn (readability); left out: %s%s", MAX_PANELS,
                    len(panels), "; ".join(rest[:10]), f"; ... ({len(rest) - 10} more)" if len(rest) > 10 else "")
        panels = panels[:MAX_PANELS]
    return panels


def curve_table(panels: list[Panel]) -> pd.DataFrame:
    rows = []
    for p in panels:
        fitted = fitted_line(p.fit, p.t)
        for i, (t, y) in enumerate(zip(p.t, p.y)):
            rows.append([p.scan.dataset, p.scan.subject, p.scan.condition, "" if p.slice is None else p.slice,
                         t, y, np.nan if fitted is None else fitted[i], p.fit.get("branch", ""), p.tau,
                         number_or_nan(p.fit.get("t_star"))])
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def _draw(a: Any, p: Panel) -> None:
    a.plot(p.t, p.y, ".", ms=3, label="T(t)")
    tt = np.linspace(p.t.min(), p.t.max(), 200)
    yy = fitted_line(p.fit, tt)
    if yy is not None:
        lim = np.nanmax(np.abs(p.y)) * 1.5 if np.isfinite(p.y).any() else 1.0
        a.plot(tt, np.where(np.abs(yy) < lim, yy, np.nan), "-", lw=1, label="a·tan(b·t)")
    if np.isfinite(p.tau):
        a.axhline(p.tau, color="r", lw=0.8, ls="--", label=f"τ={p.tau:.3g}")
    t_star = number_or_nan(p.fit.get("t_star"))
    if np.isfinite(t_star):
        a.axvline(t_star, color="gray", lw=0.8, ls=":")
    branch = p.fit.get("branch")
    a.set_title(p.title + (f" [{branch}]" if branch else ""), fontsize=7)
    a.set_xlabel("% of brain voxels removed", fontsize=7)
    a.set_ylabel("threshold T (z²)", fontsize=7)
    a.legend(fontsize=6)


def threshold_curve_figure(scans: list[Scan], out_png: str, *, logger: logging.Logger = log) -> str | None:
    """Phase-A threshold curves T(t) with the fitted a·tan(b·t) (tangent branch), τ and t*; the
    points as ``<stem>.csv``. None (logged) when no clean or lesion scan has a curve."""
    panels = panels_of(scans, logger)
    if not panels:
        modes = sorted({str(s.result["threshold"]) for s in scans if s.result.get("threshold") is not None})
        logger.info("skipped %s: no result.json with a phase-A threshold curve ('curve' or per-slice "
                    "'curves'; threshold modes here: %s)", out_png.rsplit("/", 1)[-1], ", ".join(modes) or "none recorded")
        return None
    n = len(panels)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), squeeze=False)
    for a, p in zip(axes.ravel(), panels):
        _draw(a, p)
    for a in axes.ravel()[n:]:
        a.axis("off")
    fig.tight_layout()
    write_csv(curve_table(panels), csv_beside(out_png))
    save_figure(fig, out_png, dpi=100, bbox_inches="tight")
    return out_png
