"""Thresholds calibrated on healthy validation subjects."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from itermask.io.atomic import write_json
from itermask.errors import InputError


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
