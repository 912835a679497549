"""Figures written by inference: the IterMask3D phase-A threshold curve with its fit and tau."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from itermask.core.threshold import fitted_line
from itermask.io.atomic import save_figure


def threshold_curve_plot(path: Path, percents: np.ndarray, curve: np.ndarray, fit: dict | None, tau: float,
                         mode: str, y_limit: float) -> None:
    """Threshold curve with the tangent fit (when it chose tau), k* and tau: linear zoom (left) and log scale (right).
    All in curve units: a fit on a scaled curve (``fit["scale"]``, ``infer.curve_scale_percent``) is drawn and
    labelled multiplied back, and so is its ``y_limit``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = float((fit or {}).get("scale") or 1.0)
    limit_label = f"fit y-limit {y_limit * scale:.3g}" + ("" if scale == 1.0 else f" ({y_limit:g} × {scale:.3g})")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, log_scale in zip(axes, (False, True)):
        ax.plot(percents, curve, "o-", ms=3, label="threshold curve $T$")
        t = np.linspace(percents[0], percents[-1], 400)
        line = fitted_line(fit, t)
        if line is not None:
            ax.plot(t, line, "--", label=f"fit {float(fit['a']) * scale:.3g}·tan({float(fit['b']):.3g}·t)")
        if fit and fit.get("t_star") is not None:
            ax.axvline(float(fit["t_star"]), color="tab:red", lw=1, label=f"k* (t = {float(fit['t_star']):g} %)")
        ax.axhline(tau, color="tab:green", lw=1, label=f"tau = {tau:.4g} ({mode})")
        ax.set_xlabel("brain voxels removed (%)")
        if log_scale:
            positive = curve[np.isfinite(curve) & (curve > 0)]
            ax.set_yscale("log")
            if positive.size:
                ax.set_ylim(min(positive.min(), tau) / 2, max(positive.max(), tau) * 2)
            ax.axhline(y_limit * scale, color="grey", lw=0.8, ls=":", label=limit_label)
            ax.set_title("log scale", fontsize=9)
        else:
            ax.set_ylim(0, max(3.0 * tau, 1e-6))
            ax.set_ylabel("error threshold")
            title = "IterMask3D phase A (zoom: 0 to 3 tau)"
            if fit:
                r2 = fit.get("r2")
                title += f"  [{fit.get('branch')}, R² = {'n/a' if r2 is None else f'{float(r2):.3f}'}]"
            ax.set_title(title, fontsize=9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
