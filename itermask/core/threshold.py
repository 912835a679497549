"""Subject-specific threshold of IterMask3D (METHOD.md §6, "Subject-specific threshold").

Phase A records the threshold curve ``T_1..T_n`` (``T_i`` leaves the top ``100 - t_i`` % of
brain voxels, so ``T`` grows with ``t``). From it:

1. Fit ``T(t) = a tan(b t)`` by least squares (``scipy.optimize.curve_fit``, start ``a=1,
   b=0.01``) on the points *before* the curve first exceeds ``y_limit`` (``n_fit`` points).
   ``b`` is bounded to ``[1e-8, pi / (2 t_last_fit))`` so ``b t`` stays below pi/2 inside the
   fit and tan never wraps; the solver works on ``(a b, b)`` so that a straight line (the
   ``b -> 0`` limit of the model) is fitted quickly, as ``b = 1e-8`` and a large ``a``.
   Fewer than 3 such points, a solver failure or non-finite parameters count as a failed fit
   (``a = b = r2 = nan``).
2. ``R^2`` of the fit on the points with ``t <= r2_fraction * t_n`` (default 0.8: the first 80
   points for the reference ``t = 1..100``, the first 16 for ``t = 5, 10, .., 100``), whether or
   not they were inside the fit. ``R^2`` is nan when those points have zero variance.
3. If ``R^2 >= r2_min`` ("tangent" branch) the derivative is the analytic
   ``dT/dt = a b / cos^2(b t)`` at every ``t_i``. Otherwise, or if the fit failed, or ``R^2`` is
   nan ("derivative" branch): the discrete derivative ``(T_i - T_{i-1}) / (t_i - t_{i-1})`` with
   the anchor ``(t_0, T_0) = (0, 0)`` for the first point (as the reference, and consistent with
   ``T(0) = 0`` of the model), smoothed by a centred moving average of ``window`` (5) points;
   near the ends the window is truncated to the points that exist (mean of fewer points).
4. ``k*`` = first index whose derivative exceeds ``gamma`` (strictly). If none does,
   ``no_exceed`` names the choice (METHOD.md §6): ``first`` (the reference and the papers'
   default: k* = 0, tau = T_1, nearly the whole brain stays masked, so the scan scores as
   anomalous) or ``last`` (tau = T_n: no anomaly; this code's rule before issue 10);
   ``ThresholdFit.fallback`` records which one was used (None when gamma was exceeded).
   ``tau = T[k*]``: the *measured* curve value at ``k*``, not the fitted one.

Units: the derivative is in curve units per ``t`` unit, and ``gamma`` is compared with it.
With ``t`` in percent of the brain (``1..100``, or ``5, 10, .., 100`` for a coarser phase A)
the reference ``gamma = 0.01`` (detection) / ``0.05`` (3D segmentation) applies unchanged.
``scale_at`` (not the reference's; None, the schema's default, = curve units): steps 1-4 run
on the curve divided by its value at ``t = scale_at`` (linear interpolation; e.g. 50: the
subject's median phase-A error), so ``gamma`` and ``y_limit`` are multiples of that value and
the same ``gamma`` suits scans or models whose errors differ by a factor; ``tau`` stays in curve
units.
``ThresholdFit.scale`` records the divisor (1 without ``scale_at``, or when that value is not
positive); ``a``, ``b``, ``derivative`` and ``gamma`` are in the scaled units.

Degenerate input: a curve or ``t`` that is not 1-D, has fewer than 2 points, contains NaN/inf,
or ``t`` that is not strictly increasing and positive raises ``ValueError``. A flat curve is
not an error: its ``R^2`` is nan, so the derivative branch is used; if its derivative never
exceeds ``gamma``, ``k*`` follows ``no_exceed``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

P0 = (1.0, 0.01)
#: k* when the derivative never exceeds gamma: ``first`` (reference, paper default) or ``last``
NO_EXCEED = {"first": lambda n: 0, "last": lambda n: int(n - 1)}
B_MIN = 1e-8  # lower bound of b: a straight line is fitted as b -> B_MIN, a = slope / b
POLE = 0.98 * np.pi / 2  # a drawn fit stops where |b t| reaches this (tan's pole is at pi / 2)


def tangent_model(t: np.ndarray, a: float, b: float) -> np.ndarray:
    """T(t) = a tan(b t)."""
    return a * np.tan(b * np.asarray(t, dtype=float))


def tangent_derivative(t: np.ndarray, a: float, b: float) -> np.ndarray:
    """dT/dt = a b / cos^2(b t)."""
    return a * b / np.cos(b * np.asarray(t, dtype=float)) ** 2


def number_or_nan(v: Any) -> float:
    """``float(v)``, or NaN for None and non-numbers (a result.json ``fit`` value may be null)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def fitted_line(fit: Mapping[str, Any] | None, t: np.ndarray | Sequence[float]) -> np.ndarray | None:
    """The fit that chose tau, for drawing: ``a tan(b t)`` at ``t`` (NaN from just before the pole
    on), or None when tau came from the smoothed derivative (``branch`` "derivative") or the fit
    has no finite ``a``, ``b`` (``fit`` is :meth:`ThresholdFit.to_dict` or a result.json ``fit``).
    In curve units: a fit made on a scaled curve (``scale``, module docstring) is multiplied back."""
    fit = fit or {}
    a, b = number_or_nan(fit.get("a")), number_or_nan(fit.get("b"))
    if fit.get("branch") == "derivative" or not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return None
    t = np.asarray(t, dtype=float)
    scale = number_or_nan(fit.get("scale", 1.0))
    with np.errstate(all="ignore"):
        line = np.where(np.abs(b * t) < POLE, tangent_model(t, a, b), np.nan)
    return line * (scale if math.isfinite(scale) else 1.0)


@dataclass(frozen=True)
class ThresholdFit:
    """Result of :func:`subject_threshold` (``k`` is a 0-based index into the curve)."""

    tau: float
    k: int
    t_star: float
    a: float
    b: float
    r2: float
    branch: str
    n_fit: int
    gamma: float
    t: tuple[float, ...]
    derivative: tuple[float, ...]
    fallback: str | None = None
    scale: float = 1.0

    def model(self, t: np.ndarray | Sequence[float]) -> np.ndarray:
        """The fitted tangent curve at `t`, in curve units (all nan when the fit failed)."""
        return tangent_model(np.asarray(t, dtype=float), self.a, self.b) * self.scale

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: nan/inf become None, tuples become lists."""
        def clean(v: Any) -> Any:
            if isinstance(v, (tuple, list)):
                return [clean(x) for x in v]
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        return {key: clean(value) for key, value in asdict(self).items()}


def _slope_model(t: np.ndarray, c: float, b: float) -> np.ndarray:
    """a tan(b t) written with the initial slope c = a b: c tan(b t) / b (well-posed as b -> 0)."""
    return c * np.tan(b * t) / b


def fit_tangent(t: np.ndarray, y: np.ndarray, p0: tuple[float, float] = P0) -> tuple[float, float] | None:
    """Least-squares ``(a, b)`` of ``y = a tan(b t)`` with ``B_MIN <= b < pi / (2 max t)``; None on failure.

    Solved in the parameters ``(c = a b, b)``: the same curves, but a straight line (the
    b -> 0 limit) no longer sends ``a`` to infinity, so the solver converges quickly.
    """
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    if t.size < 3:
        return None
    b_max = 0.5 * np.pi / float(t.max()) * (1.0 - 1e-6)
    b0 = min(max(float(p0[1]), B_MIN), 0.9 * b_max)  # p0's b (0.01) unless the bound is near it: t > 141
    start = (float(p0[0]) * b0, b0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(
                _slope_model, t, y, p0=start, bounds=([-np.inf, B_MIN], [np.inf, b_max]), max_nfev=5_000
            )
    except (RuntimeError, ValueError):
        return None
    c, b = (float(v) for v in params)
    a = c / b
    if not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a, b


def r_squared(y: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination; nan if `y` is flat (to rounding) or predictions are not finite."""
    y = np.asarray(y, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    flat = y.size < 2 or float(np.ptp(y)) <= 1e-12 * max(1.0, float(np.abs(y).max()))
    if flat or not np.all(np.isfinite(y_pred)):
        return float("nan")
    return 1.0 - float(np.sum((y - y_pred) ** 2)) / ss_tot


def smoothed_difference(curve: np.ndarray, t: np.ndarray, window: int = 5) -> np.ndarray:
    """Discrete derivative per t unit (anchor (0, 0) before the first point), centred moving average.

    The window is truncated at both ends (mean of the points that exist).
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"moving-average window must be a positive odd number, got {window}")
    y = np.concatenate([[0.0], np.asarray(curve, dtype=float)])
    x = np.concatenate([[0.0], np.asarray(t, dtype=float)])
    d = np.diff(y) / np.diff(x)
    idx = np.arange(d.size)
    lo = np.maximum(idx - window // 2, 0)
    hi = np.minimum(idx + window // 2 + 1, d.size)
    cum = np.concatenate([[0.0], np.cumsum(d)])
    return (cum[hi] - cum[lo]) / (hi - lo)


def _validate(curve: Any, t: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(curve, dtype=float)
    if y.ndim != 1 or y.size < 2:
        raise ValueError(f"threshold curve must be 1-D with at least 2 points, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"threshold curve contains {int(np.sum(~np.isfinite(y)))} non-finite value(s)")
    x = np.arange(1, y.size + 1, dtype=float) if t is None else np.asarray(t, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"t has shape {x.shape} but the threshold curve has shape {y.shape}")
    if not np.all(np.isfinite(x)) or x[0] <= 0 or np.any(np.diff(x) <= 0):
        raise ValueError("t must be finite, positive and strictly increasing")
    return y, x


def subject_threshold(
    curve: Sequence[float] | np.ndarray,
    *,
    gamma: float,
    y_limit: float,
    r2_min: float,
    no_exceed: str,
    scale_at: float | None,
    t: Sequence[float] | np.ndarray | None = None,
    r2_fraction: float = 0.8,
    window: int = 5,
) -> ThresholdFit:
    """Subject-specific threshold tau from the phase-A curve (algorithm in the module docstring).
    ``gamma``, ``y_limit``, ``r2_min``, ``no_exceed`` (``k_fallback``), ``scale_at``
    (``curve_scale_percent``): the experiment's ``infer`` settings; ``r2_fraction``, ``window``:
    no config key (the reference's values)."""
    measured, x = _validate(curve, t)
    if not math.isfinite(gamma):
        raise ValueError(f"gamma must be finite, got {gamma}")
    if no_exceed not in NO_EXCEED:
        raise ValueError(f"no_exceed must be one of {', '.join(NO_EXCEED)}, got '{no_exceed}'")
    scale = 1.0 if scale_at is None else float(np.interp(scale_at, x, measured))
    if not (math.isfinite(scale) and scale > 0):
        scale = 1.0
    y = measured / scale

    above = np.flatnonzero(y > y_limit)
    n_fit = int(above[0]) if above.size else int(y.size)
    params = fit_tangent(x[:n_fit], y[:n_fit])
    a, b, r2 = float("nan"), float("nan"), float("nan")
    if params is not None:
        a, b = params
        in_r2 = x <= r2_fraction * x[-1]
        r2 = r_squared(y[in_r2], tangent_model(x[in_r2], a, b))

    if math.isfinite(r2) and r2 >= r2_min:
        branch = "tangent"
        deriv = tangent_derivative(x, a, b)
    else:
        branch = "derivative"
        deriv = smoothed_difference(y, x, window)

    exceed = np.flatnonzero(deriv > gamma)
    k = int(exceed[0]) if exceed.size else NO_EXCEED[no_exceed](y.size)
    return ThresholdFit(
        tau=float(measured[k]),
        k=k,
        t_star=float(x[k]),
        a=a,
        b=b,
        r2=r2,
        branch=branch,
        n_fit=n_fit,
        gamma=float(gamma),
        t=tuple(float(v) for v in x),
        derivative=tuple(float(v) for v in deriv),
        fallback=None if exceed.size else no_exceed,
        scale=scale,
    )
