"""itermask.evaluation.scans: what a run's result.json says about its iterative mask."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from itermask.evaluation.scans import Scan, convergence, inpainting_mask_fraction, tau_at_first_point


def _scan(**result):
    return Scan("demo", "s1", "lesion", Path("."), result)


@pytest.mark.parametrize("result, expected", [
    ({"converged": True, "iterations_b": 7, "max_iterations": 20}, (1.0, 7.0)),      # IterMask3D, converged
    ({"converged": False, "iterations_b": 20, "max_iterations": 20}, (0.0, 20.0)),   # stopped at the cap
    ({"converged": [True, True], "iterations": [4, 9], "max_iterations": 10}, (1.0, 9.0)),  # 2D: every slice
    ({"converged": [True, False], "iterations": [4, 10], "max_iterations": 10}, (0.0, 10.0)),
])
def test_convergence_of_iterative_runs(result, expected):
    assert convergence(_scan(**result)) == expected


@pytest.mark.parametrize("result", [
    {"kind": "3d"},                                                         # AE, DAE: no iterations
    {"converged": False, "iterations_b": 1, "max_iterations": 1},          # -spatial: one step
    {"converged": [], "iterations": [], "max_iterations": 10},             # 2D subject without slices
])
def test_convergence_is_undefined_without_iterations(result):
    assert all(math.isnan(v) for v in convergence(_scan(**result)))


@pytest.mark.parametrize("result, expected", [
    ({"threshold": "subject", "fit": {"k": 0, "fallback": None}}, 1.0),     # slope above gamma at once
    ({"threshold": "subject", "fit": {"k": 0, "fallback": "first"}}, 1.0),  # never above: the reference's fallback
    ({"threshold": "subject", "fit": {"k": 17, "fallback": None}}, 0.0),
])
def test_tau_at_first_point_of_subject_specific_taus(result, expected):
    assert tau_at_first_point(_scan(**result)) == expected


@pytest.mark.parametrize("result", [
    {"threshold": "fixed", "fit": {"k": 0}},  # a fixed tau (phase A only recorded)
    {"threshold": "subject", "fit": None},    # -spatial: no curve
    {},                                       # a baseline
])
def test_tau_at_first_point_is_undefined_without_a_subject_tau(result):
    assert math.isnan(tau_at_first_point(_scan(**result)))


def test_inpainting_mask_fraction_of_the_diffusion_baselines():
    assert inpainting_mask_fraction(_scan(mean_mask_fraction=0.78)) == 0.78             # AutoDDPM
    assert inpainting_mask_fraction(_scan(mean_initial_mask_fraction=0.4)) == 0.4       # DDPM
    assert math.isnan(inpainting_mask_fraction(_scan(kind="3d")))                       # other methods
    assert math.isnan(inpainting_mask_fraction(_scan(mean_mask_fraction=None)))         # no slices
