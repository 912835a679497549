"""IterMask2 with IterMask3D's subject-specific threshold (``infer.threshold: subject``; the
"adaptive" rows of IterMask3D Table 6). Each slice is its own subject: IterMask3D's phase A
(``itermask.core.iterative_mask_2d.phase_a_taus``) runs with the masked network from M_0 = the
slice's brain in steps of ``step_percent`` % and records the threshold curve; its fit
(``itermask.core.threshold.subject_threshold`` with ``gamma``, ``y_limit``, ``r2_min``,
``k_fallback``, ``curve_scale_percent``) gives the slice's tau. IterMask2's own procedure then runs with that tau in
place of the calibration tau (first step with the first-iteration network at
``first_step_percentile``, then the masked iterations until the shrink < ``tol``).

Phase-A noise of a slice: a generator seeded with ``derive_seed(slice seed, 1)`` (the slice
seed drives IterMask2's own masked iterations, as with the fixed tau).
Record (result.json): per slice ``subject_tau`` and ``k_star``; ``tau`` = their median;
``calibration_tau`` = the fixed tau beside; the curves and fits only for slices-file inputs
(kind ``2d``: the largest-lesion slice, validation slices), not for whole volumes.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from itermask.errors import ConfigError
from itermask.methods._itermask import chooser, phase_a_schedule

PHASE_A_SEED_KEY = 1
#: fit entries left out of result.json: ``t`` is ``percents`` (stored once), the derivative
#: follows from the curve and the fit
FIT_LEFT_OUT = ("t", "derivative")


def check(cfg: Mapping[str, Any], single_step: bool) -> None:
    """ConfigError for settings the subject-specific tau cannot run with."""
    if cfg["threshold"] != "subject":
        return
    if single_step:
        raise ConfigError("infer.threshold 'subject' needs IterMask2's masked iterations; variant no_spatial "
                          "(-spatial) has none: use threshold 'fixed'")
    phase_a_schedule(cfg)


def pool(pieces: Sequence[tuple]) -> tuple[list[Any], list[int], list[int]]:
    """The slices of several inputs ((images, hfs, brains, seeds) each) as one pool:
    ([images, hfs, brains] tensors, seeds, slices per input)."""
    import torch

    sizes = [len(p[0]) for p in pieces]
    cat = [torch.from_numpy(np.concatenate([p[i] for p in pieces if len(p[0])])) for i in range(3)]
    return cat, [int(s) for p in pieces for s in p[3]], sizes


def split(results: Sequence[Any], sizes: Sequence[int]) -> list[list[Any]]:
    """Pooled per-slice results back per input."""
    out, start = [], 0
    for n in sizes:
        out.append(list(results[start:start + n]))
        start += n
    return out


def subject_taus(model: Any, pieces: Sequence[tuple], cfg: Mapping[str, Any], *, variant: str,
                 device: Any, amp: bool) -> list[list[Any]]:
    """Phase A on the slices of several inputs in one lockstep pool; results
    (``Result3D``: ``tau``, ``tau_info``, ``curve``) per input."""
    from itermask.core.iterative_mask_2d import phase_a_taus
    from itermask.io.seeds import derive_seed

    if sum(len(p[0]) for p in pieces) == 0:
        return [[] for _ in pieces]
    (images, hfs, brains), seeds, sizes = pool(pieces)
    res = phase_a_taus(model, images, hfs, brains, [derive_seed(s, PHASE_A_SEED_KEY) for s in seeds],
                       percents=phase_a_schedule(cfg), choose_tau=chooser(cfg), variant=variant,
                       batch_size=int(cfg["batch_size"]), device=device, amp=amp)
    return split(res, sizes)


def record(phase_a: Sequence[Any], kind: str, cfg: Mapping[str, Any], calibration_tau: float) -> dict[str, Any]:
    """result.json entries of one input's subject-specific taus (module docstring)."""
    taus = [float(r.tau) for r in phase_a]
    out = {"threshold": "subject", "tau": float(np.median(taus)) if taus else float("nan"),
           "tau_summary": "median of subject_tau (one tau per slice)", "subject_tau": taus,
           "k_star": [int(r.tau_info.k) for r in phase_a],
           "k_fallback_slices": sum(r.tau_info.fallback is not None for r in phase_a),
           "calibration_tau": calibration_tau, "gamma": float(cfg["gamma"]), "y_limit": float(cfg["y_limit"]),
           "r2_min": float(cfg["r2_min"]), "k_fallback": cfg["k_fallback"],
           "curve_scale_percent": cfg["curve_scale_percent"],
           "step_percent": float(cfg["step_percent"]), "fine_from_percent": cfg["fine_from_percent"],
           "percents": list(phase_a_schedule(cfg)),
           "phase_a_seed_rule": f"derive_seed(slice seed, {PHASE_A_SEED_KEY})"}
    if kind == "2d":
        out["curves"] = [np.asarray(r.curve, float).tolist() for r in phase_a]
        out["fits"] = [{k: v for k, v in r.tau_info.to_dict().items() if k not in FIT_LEFT_OUT} for r in phase_a]
    return out
