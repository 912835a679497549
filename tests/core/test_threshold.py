"""Tests of the subject-specific threshold (itermask.core.threshold)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import itermask.core.threshold as threshold
from itermask.core.threshold import ThresholdFit, fitted_line, subject_threshold
from support import threshold_options

CONFIG_OPTIONS = ("y_limit", "r2_min", "no_exceed", "scale_at")


def schema_fit(curve, **kw) -> ThresholdFit:
    """``subject_threshold`` at the schema's itermask3d settings (the reference's: y_limit 10,
    r2_min 0.85, k_fallback first, no curve scale), those given in ``kw`` over them."""
    options = threshold_options(**{k: kw.pop(k) for k in CONFIG_OPTIONS if k in kw})
    return subject_threshold(curve, **options, **kw)


T = np.arange(1, 101, dtype=float)


def first_t_over_gamma(a: float, b: float, gamma: float) -> float:
    """Analytic first t where a b / cos^2(b t) > gamma (a, b > 0, a b < gamma)."""
    return math.acos(math.sqrt(a * b / gamma)) / b


def moving_average_derivative(curve: np.ndarray, t: np.ndarray, window: int = 5) -> np.ndarray:
    """Independent loop version of the documented derivative branch."""
    prev_y, prev_t = 0.0, 0.0
    d = []
    for yi, ti in zip(curve, t):
        d.append((yi - prev_y) / (ti - prev_t))
        prev_y, prev_t = yi, ti
    half = window // 2
    out = []
    for i in range(len(d)):
        part = d[max(0, i - half): min(len(d), i + half + 1)]
        out.append(sum(part) / len(part))
    return np.array(out)


def test_tangent_fit_recovers_parameters_with_noise():
    rng = np.random.default_rng(0)
    a, b = 0.05, 0.014
    curve = a * np.tan(b * T) + rng.normal(0.0, 0.002, T.size)
    fit = schema_fit(curve, gamma=0.01)
    assert fit.branch == "tangent"
    assert fit.n_fit == 100
    assert fit.a == pytest.approx(a, rel=0.05)
    assert fit.b == pytest.approx(b, rel=0.01)
    assert fit.r2 > 0.99
    # tau is the measured curve value at k*, not the fitted one
    assert fit.tau == curve[fit.k]
    assert fit.t_star == T[fit.k]


@pytest.mark.parametrize("a, b, gamma", [(0.05, 0.014, 0.01), (0.2, 0.012, 0.01), (0.02, 0.015, 0.05)])
def test_k_star_matches_analytic_derivative(a, b, gamma):
    t_cross = first_t_over_gamma(a, b, gamma)
    assert 1 < t_cross < 100 and abs(t_cross - round(t_cross)) > 0.05  # not a borderline case
    expected_t = math.floor(t_cross) + 1
    fit = schema_fit(a * np.tan(b * T), gamma=gamma)
    assert fit.branch == "tangent"
    assert fit.t_star == expected_t
    assert fit.k == expected_t - 1
    assert fit.tau == pytest.approx(a * math.tan(b * expected_t), rel=1e-12)


def test_derivative_never_exceeding_gamma_takes_the_first_point_as_the_reference():
    a, b = 0.05, 0.014  # a b / cos^2(1.4) = 0.0248 < 0.05 on the whole range
    curve = a * np.tan(b * T)
    fit = schema_fit(curve, gamma=0.05)
    assert fit.branch == "tangent"
    assert fit.k == 0 and fit.t_star == 1.0 and fit.tau == curve[0] and fit.fallback == "first"
    last = schema_fit(curve, gamma=0.05, no_exceed="last")  # the other reading, by name
    assert last.k == 99 and last.t_star == 100.0 and last.fallback == "last"
    assert schema_fit(curve, gamma=0.01).fallback is None  # exceeded: no fallback
    with pytest.raises(ValueError, match="no_exceed"):
        schema_fit(curve, gamma=0.05, no_exceed="middle")


@pytest.mark.parametrize("step", [1, 5])
def test_step_curve_takes_derivative_branch(step):
    t = np.arange(step, 101, step, dtype=float)
    curve = np.where(t <= 40, 0.01, 1.0) + 0.0005 * t
    fit = schema_fit(curve, gamma=0.01, t=t)
    assert fit.r2 < 0.85
    assert fit.branch == "derivative"
    expected = moving_average_derivative(curve, t)
    np.testing.assert_allclose(fit.derivative, expected, rtol=1e-12, atol=1e-15)
    expected_k = int(np.flatnonzero(expected > 0.01)[0])
    assert fit.k == expected_k
    # the jump at t=41 enters the centred window of 5 two points earlier
    jump = int(np.flatnonzero(t > 40)[0])
    assert expected_k == jump - 2
    assert fit.tau == curve[jump - 2]
    # per t unit: with 5 % steps the jump of 0.9925 is a slope of 0.1985 per percent, averaged
    # with four neighbours of slope 0.0005
    if step == 5:
        assert max(fit.derivative) == pytest.approx((0.9925 / 5 + 4 * 0.0005) / 5, rel=1e-9)


def test_derivative_branch_edges_and_anchor():
    """First difference uses the (0, 0) anchor; windows are truncated at both ends."""
    curve = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6])
    fit = schema_fit(curve, gamma=1.0)
    assert fit.branch == "derivative"
    d = [0.5, 0, 0, 0, 0, 0, 0.1]
    expected = [sum(d[0:3]) / 3, sum(d[0:4]) / 4, sum(d[0:5]) / 5, sum(d[1:6]) / 5,
                sum(d[2:7]) / 5, sum(d[3:7]) / 4, sum(d[4:7]) / 3]
    np.testing.assert_allclose(fit.derivative, expected, rtol=1e-12)


def test_y_limit_truncates_fit():
    a, b = 1.0, 0.0155
    curve = a * np.tan(b * T)
    first_over = int(np.flatnonzero(curve > 10.0)[0])  # tan(b t) > 10 first at t = 95
    assert first_over == math.floor(math.atan(10.0) / b)  # index of t = floor(atan(10)/b) + 1
    # garbage after the first exceedance must not influence the fit
    corrupted = curve.copy()
    corrupted[first_over + 1:] = 1e6 * (1 + np.arange(corrupted.size - first_over - 1) % 3)
    fit = schema_fit(corrupted, gamma=0.01, y_limit=10.0)
    assert fit.n_fit == first_over
    assert fit.a == pytest.approx(a, rel=1e-6)
    assert fit.b == pytest.approx(b, rel=1e-6)
    # a larger y_limit includes the garbage, and the fit no longer recovers the curve
    loose = schema_fit(corrupted, gamma=0.01, y_limit=1e9)
    assert loose.n_fit == 100
    assert not (loose.a == pytest.approx(a, rel=1e-3) and loose.b == pytest.approx(b, rel=1e-3))


def test_r2_uses_only_points_up_to_80_percent_of_t_last():
    """Curve = a tan(b t) exactly for t <= 80, far off after: R^2 (t <= 0.8 t_n) = 1, tangent branch."""
    from itermask.core.threshold import r_squared, tangent_model

    a, b, gamma = 0.5, 0.015, 0.01
    curve = a * np.tan(b * T)  # 0.5 tan(1.2) = 1.29 at t = 80
    curve[80:] = 20.0 + T[80:]  # t = 81..100: above y_limit (so outside the fit) and far off the tangent
    fit = schema_fit(curve, gamma=gamma)  # the schema's y_limit 10, r2_min 0.85; r2_fraction 0.8
    assert fit.n_fit == 80
    assert fit.a == pytest.approx(a, rel=1e-6) and fit.b == pytest.approx(b, rel=1e-6)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.branch == "tangent"
    # a b / cos^2(b t) > 0.01 first at t > acos(sqrt(0.75)) / 0.015 = 34.9 -> t = 35 (index 34)
    assert fit.k == 34 and first_t_over_gamma(a, b, gamma) == pytest.approx(34.9066, abs=1e-3)
    # with the tail inside the R^2 the same fit scores far below r2_min -> derivative branch
    assert r_squared(curve, tangent_model(T, fit.a, fit.b)) < 0
    with_tail = schema_fit(curve, gamma=gamma, r2_fraction=1.0)
    assert with_tail.r2 < 0.85 and with_tail.branch == "derivative"


def test_first_point_over_y_limit_falls_back_to_derivative():
    curve = np.linspace(11.0, 20.0, 100)
    fit = schema_fit(curve, gamma=0.01)
    assert fit.n_fit == 0
    assert math.isnan(fit.a) and math.isnan(fit.b) and math.isnan(fit.r2)
    assert fit.branch == "derivative"


def test_percent_steps_match_dense_curve():
    a, b, gamma = 0.05, 0.014, 0.01
    dense = schema_fit(a * np.tan(b * T), gamma=gamma)
    t5 = np.arange(5, 101, 5, dtype=float)
    sparse = schema_fit(a * np.tan(b * t5), gamma=gamma, t=t5)
    assert sparse.branch == dense.branch == "tangent"
    assert sparse.a == pytest.approx(dense.a, rel=1e-6)
    assert sparse.b == pytest.approx(dense.b, rel=1e-6)
    # the sparse k* is the first 5 % step at or after the dense one
    assert sparse.t_star == 5 * math.ceil(dense.t_star / 5)
    assert sparse.tau == pytest.approx(a * math.tan(b * sparse.t_star), rel=1e-12)
    assert abs(sparse.tau - dense.tau) <= a * math.tan(b * (dense.t_star + 5)) - dense.tau
    # R^2 uses t <= 80 % of the range in both cases: 80 dense points, 16 sparse ones
    assert sparse.r2 == pytest.approx(1.0, abs=1e-9)


def test_gamma_is_per_t_unit_not_per_step():
    t5 = np.arange(5, 101, 5, dtype=float)
    curve = 0.02 * t5  # slope 0.02 per percent = 0.1 per 5 % step
    assert schema_fit(curve, gamma=0.01, t=t5).k == 0
    fit = schema_fit(curve, gamma=0.03, t=t5, no_exceed="last")
    assert fit.k == t5.size - 1 and fit.fallback == "last"  # 0.02 per percent never exceeds 0.03


def test_flat_curve_falls_back():
    fit = schema_fit(np.zeros(100), gamma=0.01)
    assert math.isnan(fit.r2)
    assert fit.branch == "derivative"
    assert fit.k == 0 and fit.tau == 0.0 and fit.fallback == "first"
    assert schema_fit(np.zeros(100), gamma=0.01, no_exceed="last").k == 99
    flat = schema_fit(np.full(100, 0.3), gamma=0.01)
    assert flat.branch == "derivative"
    assert flat.tau == 0.3


@pytest.mark.parametrize(
    "curve, t, message",
    [
        (np.r_[np.arange(99) * 0.01, np.nan], None, "non-finite"),
        (np.r_[np.arange(99) * 0.01, np.inf], None, "non-finite"),
        (np.ones((10, 2)), None, "1-D"),
        (np.array([0.1]), None, "at least 2"),
        (np.arange(10) * 0.1, np.arange(1, 10), "shape"),
        (np.arange(10) * 0.1, np.r_[1, 3, 2, 4, 5, 6, 7, 8, 9, 10], "increasing"),
        (np.arange(10) * 0.1, np.arange(0, 10), "positive"),
    ],
)
def test_bad_input_raises(curve, t, message):
    with pytest.raises(ValueError, match=message):
        schema_fit(curve, gamma=0.01, t=t)


def test_to_dict_is_json_safe():
    fit = schema_fit(np.linspace(11.0, 20.0, 20), gamma=0.01)
    d = fit.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert d["a"] is None and d["b"] is None and d["r2"] is None
    assert json.loads(text)["k"] == fit.k
    assert len(d["derivative"]) == 20
    good = schema_fit(0.05 * np.tan(0.014 * T), gamma=0.01)
    assert isinstance(good, ThresholdFit)
    assert good.to_dict()["a"] == pytest.approx(0.05)
    np.testing.assert_allclose(good.model([10.0, 50.0]), 0.05 * np.tan(0.014 * np.array([10.0, 50.0])), rtol=1e-8)


def test_fitted_line_is_the_tangent_before_its_pole_and_none_for_the_derivative_branch():
    t = np.array([10.0, 50.0, 77.0, 78.0, 90.0])
    b = 0.02  # pole at t = 78.54; drawn while |b t| < 0.98 pi/2, i.e. t < 76.97
    line = fitted_line({"a": 0.5, "b": b, "branch": "tangent"}, t)
    assert line[:2] == pytest.approx(0.5 * np.tan(b * t[:2]))
    assert np.isnan(line[2:]).all()  # 77 is past the clip; 90 is past the pole, where tan wraps negative
    assert fitted_line({"a": 0.5, "b": b, "branch": "derivative"}, t) is None
    assert fitted_line({"a": None, "b": None, "branch": "tangent"}, t) is None
    assert fitted_line(None, t) is None
    fit = schema_fit(0.5 * np.tan(0.01 * T), gamma=0.5)  # a ThresholdFit's record draws its own model
    assert fitted_line(fit.to_dict(), T) == pytest.approx(fit.model(T))


@pytest.mark.parametrize("t_last, b_start", [(100, 0.01), (28, 0.01), (200, 0.9 * 0.5 * math.pi / 200 * (1 - 1e-6))])
def test_fit_starts_at_the_spec_values_a1_b001_inside_the_bound(monkeypatch, t_last, b_start):
    """The spec's start a = 1, b = 0.01 (as (a b, b)); only a fit reaching past t = 141 starts lower."""
    seen = []
    real = threshold.curve_fit

    def spy(f, x, y, p0, **kw):
        seen.append(tuple(p0))
        return real(f, x, y, p0=p0, **kw)

    monkeypatch.setattr(threshold, "curve_fit", spy)
    t = np.arange(1.0, t_last + 1)
    a, b = threshold.fit_tangent(t, 0.2 * np.tan(0.005 * t))
    assert seen == [pytest.approx((b_start, b_start))]
    assert (a, b) == (pytest.approx(0.2, rel=1e-4), pytest.approx(0.005, rel=1e-4))


@pytest.mark.parametrize("factor", [0.2, 7.0])
def test_scale_at_makes_the_rule_blind_to_the_curve_scale(factor):
    """With ``scale_at`` the rule sees the curve divided by its value there: a scan whose errors are
    all ``factor`` times larger gets the same k* and a tau ``factor`` times larger. The reference's
    rule (error units) moves k* with the scale."""
    a, b = 0.05, 0.014
    curve = a * np.tan(b * T)
    at50 = a * math.tan(b * 50)
    gamma = 0.02 / at50  # in units of T_50: the same crossing as 0.02 in curve units
    expected_t = math.floor(first_t_over_gamma(a, b, 0.02)) + 1
    base = schema_fit(curve, gamma=gamma, y_limit=10.0 / at50, scale_at=50)
    assert base.scale == pytest.approx(at50, rel=1e-12)
    assert base.t_star == expected_t and base.tau == pytest.approx(curve[expected_t - 1], rel=1e-12)
    scaled = schema_fit(factor * curve, gamma=gamma, y_limit=10.0 / at50, scale_at=50)
    assert scaled.k == base.k and scaled.tau == pytest.approx(factor * base.tau, rel=1e-12)
    assert scaled.scale == pytest.approx(factor * at50, rel=1e-12)
    assert scaled.a == pytest.approx(base.a, rel=1e-6) and scaled.b == pytest.approx(base.b, rel=1e-6)
    ref_base = schema_fit(curve, gamma=0.02)
    ref_scaled = schema_fit(factor * curve, gamma=0.02)
    assert ref_base.t_star == expected_t and ref_scaled.k != ref_base.k


def test_scale_at_interpolates_between_percents_and_ignores_a_non_positive_value():
    t = np.array([20.0, 40.0, 60.0, 80.0, 100.0])
    curve = np.array([1.0, 2.0, 4.0, 8.0, 30.0])
    fit = schema_fit(curve, gamma=1.0, t=t, scale_at=50)
    assert fit.scale == pytest.approx(3.0)  # halfway between 2 (40 %) and 4 (60 %)
    assert schema_fit(curve, gamma=1.0, t=t).scale == 1.0
    flat = schema_fit(np.zeros(5), gamma=1.0, t=t, scale_at=50)  # a zero curve: no division
    assert flat.scale == 1.0 and flat.tau == 0.0


def test_fitted_line_and_model_of_a_scaled_fit_are_in_curve_units():
    curve = 3.0 * 0.05 * np.tan(0.014 * T)
    fit = schema_fit(curve, gamma=0.01, scale_at=50)
    assert fit.branch == "tangent" and fit.scale == pytest.approx(curve[49])
    np.testing.assert_allclose(fit.model(T[:60]), curve[:60], rtol=1e-6)
    np.testing.assert_allclose(fitted_line(fit.to_dict(), T[:60]), curve[:60], rtol=1e-6)
