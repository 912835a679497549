"""Tests of the per-subject threshold-curve figure (itermask.inference.plots)."""
from __future__ import annotations

import numpy as np
import pytest

from itermask.inference import plots

T = np.arange(5.0, 101, 5)


@pytest.fixture()
def drawn(monkeypatch):
    """The labels of the lines drawn on each axis of the saved figure."""
    saved = []

    def keep(fig, path, **kw):
        saved.append([[ln.get_label() for ln in a.get_lines()] for a in fig.axes])
        return save(fig, path, **kw)

    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", keep)
    return saved


@pytest.mark.parametrize("branch, fit_drawn", [("tangent", True), ("derivative", False)])
def test_curve_png_draws_the_fit_only_when_it_chose_tau(tmp_path, drawn, branch, fit_drawn):
    curve = 0.5 * np.tan(0.012 * T)
    fit = {"a": 0.5, "b": 0.012, "branch": branch, "r2": 0.99, "t_star": 60.0}
    plots.threshold_curve_plot(tmp_path / "curve.png", T, curve, fit, 1.2, "subject", 10.0)
    assert (tmp_path / "curve.png").stat().st_size > 0
    for labels in drawn[0]:
        assert any(label.startswith("fit 0.5·tan") for label in labels) is fit_drawn
        assert "threshold curve $T$" in labels


def test_curve_png_of_a_scaled_fit_is_in_curve_units(tmp_path, drawn, monkeypatch):
    """A fit on the curve divided by ``scale`` is drawn, labelled and y-limited in curve units."""
    lines = {}
    real_plot = plots.fitted_line
    monkeypatch.setattr(plots, "fitted_line", lambda fit, t: lines.setdefault("fit", real_plot(fit, t)))
    curve = 4.0 * 0.5 * np.tan(0.012 * T)
    fit = {"a": 0.5, "b": 0.012, "branch": "tangent", "r2": 0.99, "t_star": 60.0, "scale": 4.0}
    plots.threshold_curve_plot(tmp_path / "curve.png", T, curve, fit, 1.2, "subject", 10.0)
    np.testing.assert_allclose(lines["fit"], 2.0 * np.tan(0.012 * np.linspace(T[0], T[-1], 400)), rtol=1e-9)
    assert any(label.startswith("fit 2·tan") for label in drawn[0][0])
    assert "fit y-limit 40 (10 × 4)" in drawn[0][1]
