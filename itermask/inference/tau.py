"""Where tau comes from: every threshold source of inference in one module.

- IterMask3D subject-specific tau: the phase-A curve's fit (``itermask.core.threshold``).
- IterMask3D fixed tau (`fixed_tau`): config ``infer.fixed_tau``, else the model's calibration,
  the rule of IterMask2 (the median of the validation subjects' subject-specific taus, the rule
  before issue 10, is gone with its rule ``fixed_tau``).
- The calibration (`calibration_tau`), IterMask2's tau and IterMask3D's fixed tau: the
  validation-error quantile at the percentile training was configured with; another
  ``tau_percentile`` reads the quantile stored at that integer percentile, so a tau-percentile
  sweep needs no retraining. Written when training ends (``itermask.methods._itermask.calibrate``).
"""
from __future__ import annotations

from typing import Any, Mapping

from itermask.errors import ConfigError, InputError


def fixed_tau(configured: float | None, meta: Mapping[str, Any], percentile: float,
              model_path: str = "") -> tuple[float, str]:
    """(tau, source) of IterMask3D's ``threshold: fixed`` (METHOD.md §6, "a cross-validated
    threshold on normal data"): ``infer.fixed_tau`` when set, else the model's calibration at
    ``infer.tau_percentile`` (`calibration_tau`)."""
    if configured is not None:
        return float(configured), "config infer.fixed_tau"
    tau, pct = calibration_tau(meta, percentile, model_path)
    return tau, f"calibration: {pct:g}th percentile of the validation errors inside training masks"


def calibration_tau(meta: Mapping[str, Any], percentile: float | None, model_path: str = "") -> tuple[float, float | None]:
    """(tau, percentile) of a calibrated model (IterMask2, IterMask3D) for ``tau_percentile``
    (module docstring)."""
    cal = meta.get("calibration") or {}
    if cal.get("tau") is None:
        raise InputError("model has no calibration tau (meta['calibration']['tau']; models trained before issue 10 "
                         "calibrate only IterMask2): retrain it", path=model_path)
    own = None if cal.get("percentile") is None else float(cal["percentile"])
    if percentile is None or (own is not None and float(percentile) == own):
        return float(cal["tau"]), own
    pcts, values = cal.get("quantile_percentiles"), cal.get("quantiles")
    if not pcts or not values:
        raise InputError(f"infer.tau_percentile {percentile:g} differs from the model's calibration percentile "
                         f"{own} and the model stores no per-percentile quantiles (trained before they were "
                         "stored): retrain it, or use its own percentile", path=model_path)
    table = {float(p): float(v) for p, v in zip(pcts, values)}
    if float(percentile) not in table:
        raise ConfigError(f"infer.tau_percentile {percentile:g}: the model stores quantiles at integer "
                          f"percentiles {int(min(table))}..{int(max(table))} only")
    return table[float(percentile)], float(percentile)
