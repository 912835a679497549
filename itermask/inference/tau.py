"""Where tau comes from: every threshold source of inference in one module.

- IterMask3D subject-specific tau: the phase-A curve's fit (``itermask.core.threshold``).
- IterMask3D fixed tau: config ``infer.fixed_tau``, else ``fixed_tau.json`` written by rule
  ``fixed_tau`` from the validation subjects (`fixed_tau_from_results`, `read_fixed_tau`).
- IterMask2 tau: the model's calibration (`itermask2_tau`): the validation-error quantile at
  the percentile training was configured with; another ``tau_percentile`` reads the quantile
  stored at that integer percentile, so a tau-percentile sweep needs no retraining.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from itermask.io.atomic import write_json
from itermask.errors import ConfigError, InputError


def fixed_tau_from_results(runs: Sequence[tuple[str, str, str | Path]], out_json: str, condition: str = "val") -> float:
    """Median of the subject-specific taus of validation subjects (IterMask3D fixed-τ ablation).

    ``runs``: (dataset, subject, inference folder) of each validation subject; the folder holds
    ``<condition>/result.json``. Dataset and subject are values, never read from the folder name.
    """
    taus: dict[str, float] = {}
    for dataset, subject, folder in runs:
        path = Path(folder) / condition / "result.json"
        if not path.exists():
            raise InputError(f"no '{condition}' result (needed for the fixed threshold)", path=path,
                             dataset=dataset, subject=subject)
        result = json.loads(path.read_text())
        tau = result.get("tau")
        if tau is None or not np.isfinite(tau):
            raise InputError("result has no finite 'tau'", path=path, dataset=dataset, subject=subject)
        taus[f"{dataset}/{subject}"] = float(tau)
    if not taus:
        raise InputError("no validation subjects to calibrate the fixed threshold on", path=out_json)
    tau = float(np.median(list(taus.values())))
    write_json(out_json, {"tau": tau, "statistic": "median", "per_subject": taus})
    return tau


def read_fixed_tau(fixed_tau: float | None, fixed_tau_path: str | None) -> tuple[float, str]:
    """(tau, source) for ``threshold: fixed``: ``fixed_tau`` when set, else the file's ``tau``."""
    if fixed_tau is not None:
        return float(fixed_tau), "config"
    if fixed_tau_path is None:
        raise ConfigError("infer.threshold is 'fixed' but neither infer.fixed_tau nor a fixed_tau.json was given")
    path = Path(fixed_tau_path)
    try:
        tau = float(json.loads(path.read_text())["tau"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read 'tau' from the fixed-tau file ({exc})", path=path) from exc
    return tau, str(path)


def itermask2_tau(meta: Mapping[str, Any], percentile: float | None, model_path: str = "") -> tuple[float, float | None]:
    """(tau, percentile) of an IterMask2 model for ``tau_percentile`` (module docstring)."""
    cal = meta.get("calibration") or {}
    if cal.get("tau") is None:
        raise InputError("IterMask2 model has no calibration tau (meta['calibration']['tau'])", path=model_path)
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
