"""Iterative masking (METHOD.md §6): the IterMask3D and IterMask2 loops and lockstep batching.

Fake networks with known reconstructions (tests/inference_fakes.py) make the expected
masks/thresholds computable independently of the code under test.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from inference_fakes import S, FillPassThrough, Oracle, ball, cube, cube_subject, dice, inpaint_rule

from support import run2d_settings, run3d_settings, threshold_options

from itermask.core.iterative_mask_2d import run_itermask2
from itermask.core.iterative_mask_3d import phase_a_percents, run_itermask3d
from itermask.core.lockstep import brain_quantile

torch.set_num_threads(1)


# The loops take every setting (no defaults of their own): these tests run them at the schema's
# settings on the CPU (support.run3d_settings / run2d_settings), with a test's own over them.
def run3d(*args, **kw):
    return run_itermask3d(*args, **run3d_settings(**kw))


def run2d(*args, **kw):
    return run_itermask2(*args, **run2d_settings(**kw))


def const_tau(tau):
    return lambda curve: (tau, None)


# ----------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------
def test_brain_quantile_matches_numpy_inverted_cdf_with_different_brain_sizes():
    g = torch.Generator().manual_seed(1)
    err = torch.rand((3, 1, 9, 11), generator=g)
    brain = torch.zeros_like(err, dtype=torch.bool)
    brain[0, 0, :5, :7] = True      # 35 voxels
    brain[1, 0, 2:, 1:] = True      # 70 voxels
    brain[2, 0] = True              # 99 voxels
    for p in (1.0, 5.0, 37.0, 50.0, 99.0, 100.0):
        got = brain_quantile(err, brain, p).numpy()
        want = [np.quantile(err[b][brain[b]].numpy(), p / 100, method="inverted_cdf") for b in range(3)]
        np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float32))
        # what it means: [e > T] keeps the top (100 - p) % of the brain
        for b in range(3):
            n = int(brain[b].sum())
            kept = int((err[b][brain[b]] > torch.tensor(got[b])).sum())
            assert kept == n - math.ceil(n * p / 100)


def test_phase_a_percents():
    assert phase_a_percents(5, fine_from=None) == tuple(float(v) for v in range(5, 101, 5))
    assert len(phase_a_percents(1, fine_from=None)) == 100
    with pytest.raises(ValueError, match="step_percent must divide 100, got 7"):
        phase_a_percents(7, fine_from=None)
    # a coarse start, then the reference's 1 % steps from fine_from on
    assert phase_a_percents(5, fine_from=90) == (*(float(v) for v in range(5, 91, 5)),
                                                 *(float(v) for v in range(91, 101)))
    assert len(phase_a_percents(5, fine_from=90)) == 28
    for bad in (92, 100, 0, 87.5):
        with pytest.raises(ValueError, match="fine_from_percent"):
            phase_a_percents(5, fine_from=bad)
    # a finer tail: 0.5 % steps from 95
    assert phase_a_percents(5, fine_from=95, fine_step=0.5)[18:] == (95.0, 95.5, 96.0, 96.5, 97.0, 97.5, 98.0,
                                                                     98.5, 99.0, 99.5, 100.0)
    assert len(phase_a_percents(5, fine_from=95, fine_step=0.25)) == 39
    assert phase_a_percents(2.5, fine_from=87.5, fine_step=2.5) == phase_a_percents(2.5, fine_from=None)
    for bad_step in (0.3, 0.0, -1.0):
        with pytest.raises(ValueError, match="fine step"):
            phase_a_percents(5, fine_from=90, fine_step=bad_step)


# ----------------------------------------------------------------------------------------
# IterMask3D
# ----------------------------------------------------------------------------------------
def test_phase_a_curve_equals_independent_quantiles_and_is_monotone():
    """Reconstruction = HF channel, so e = (x - hf)^2 whatever the mask: T_i = quantile_i."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn((S, S, S), generator=g)
    hf = x - torch.randn((S, S, S), generator=g)
    brain = ball((15.5, 15.5, 15.5), 12)
    recorder: list[np.ndarray] = []

    def choose(curve):
        recorder.append(curve)
        return 0.5, None

    model = Oracle([(hf, x, x)], lambda x_, h_, m: hf)
    percents = phase_a_percents(10, fine_from=None)
    (r,) = run3d(model, [x], [hf], [brain], [0], percents=percents, choose_tau=choose,
                          tol=0.01, max_iterations=5)
    e = ((x - hf) ** 2)[brain].numpy()
    want = [np.quantile(e, p / 100, method="inverted_cdf") for p in percents]
    np.testing.assert_allclose(r.curve, want, rtol=1e-6)
    assert np.all(np.diff(r.curve) >= 0)
    assert r.iterations_a == 10 and len(recorder) == 1 and np.array_equal(recorder[0], r.curve)
    np.testing.assert_array_equal(r.percents, percents)
    # phase B with a mask-independent error converges after 2 steps: [e > tau] twice
    assert r.iterations_b == 2 and r.converged and r.changes[-1] == 0.0
    np.testing.assert_array_equal(r.mask.numpy(), (((x - hf) ** 2 > 0.5) & brain).numpy())


def test_final_mask_concentrates_on_the_anomalous_cube():
    x, hf, brain, h, anomaly = cube_subject(3, (10, 10, 10), (17, 17, 17))
    model = Oracle([(hf, x, h)], inpaint_rule)
    (r,) = run3d(model, [x], [hf], [brain], [0], percents=phase_a_percents(5, fine_from=None),
                          choose_tau=const_tau(1.0), tol=0.01, max_iterations=10)
    assert dice(r.mask.numpy(), anomaly.numpy()) > 0.95
    assert r.converged and r.iterations_b <= 3
    # the error map is (x - x_hat)^2 in the brain and 0 outside
    assert float(r.error[~brain].abs().max()) == 0.0
    np.testing.assert_allclose(r.error.numpy(), (((x - r.recon) ** 2) * brain).numpy(), rtol=1e-6)


def test_phase_b_can_expand_and_stops_by_its_rule():
    """Region R is reconstructed badly only when the mask is small: the mask grows back."""
    brain = ball((15.5, 15.5, 15.5), 13)
    x = torch.zeros((S, S, S)) + brain * 1.0
    hf = x + 7.0
    core = cube((12, 12, 12), (16, 16, 16))          # always anomalous (64 voxels)
    rim = cube((16, 12, 12), (20, 16, 16))           # anomalous only in small-mask context (64)
    small = 1000

    def rule(x_, h_, masked):
        err = 2.0 * core.float()
        if int(masked.sum()) < small:
            err = err + 2.0 * rim.float()
        return x_ + err

    model = Oracle([(hf, x, x)], rule)
    (r,) = run3d(model, [x], [hf], [brain], [0], percents=(), choose_tau=const_tau(1.0),
                          tol=0.01, max_iterations=10)
    # step 1: mask = brain -> core; step 2: small mask -> core + rim (expansion); step 3: unchanged
    assert r.iterations_b == 3 and r.converged
    assert r.changes[1] == pytest.approx(64 / 64) and r.changes[2] == 0.0
    np.testing.assert_array_equal(r.mask.numpy(), (core | rim).numpy())

    # a cap on the iterations stops the loop without convergence
    (r2,) = run3d(model, [x], [hf], [brain], [0], percents=(), choose_tau=const_tau(1.0),
                           tol=0.01, max_iterations=2)
    assert r2.iterations_b == 2 and not r2.converged
    # the change is relative to the previous mask: step 1 = |brain xor core| / |brain|
    n_brain = int(brain.sum())
    assert r.changes[0] == pytest.approx((n_brain - 64) / n_brain)
    # the loop stops at the first step whose change is below tol
    for tol, steps in ((r.changes[0] + 1e-3, 1), (r.changes[0] - 1e-3, 3)):
        (r3,) = run3d(model, [x], [hf], [brain], [0], percents=(), choose_tau=const_tau(1.0),
                               tol=tol, max_iterations=10)
        assert r3.iterations_b == steps and r3.converged


def test_phase_b_fixed_noise_is_a_fixed_point_iteration_fresh_noise_is_not():
    brain = ball((15.5, 15.5, 15.5), 13)
    x = brain * 0.5
    kw = dict(percents=(), choose_tau=const_tau(1.0), tol=0.001, max_iterations=6)
    (fixed,) = run3d(FillPassThrough(), [x], [x], [brain], [3], **kw)
    # iteration 2 sees the same noise in the voxels iteration 1 kept: the mask repeats exactly
    assert fixed.iterations_b == 2 and fixed.converged and fixed.changes[1] == 0.0
    assert 0 < int(fixed.mask.sum()) < int(brain.sum())
    (fresh,) = run3d(FillPassThrough(), [x], [x], [brain], [3], phase_b_noise="fresh", **kw)
    assert fresh.changes[0] == fixed.changes[0]  # the same first draw
    assert fresh.changes[1] > 0.1 and not fresh.converged  # new noise keeps about P(|x - e| > 1) of it
    with pytest.raises(ValueError, match="phase_b_noise"):
        run3d(FillPassThrough(), [x], [x], [brain], [3], phase_b_noise="other", **kw)


def test_phase_b_start_tau_mask_keeps_a_lesion_the_whole_brain_start_loses():
    """The lesion's error is high only in a small-mask context (under 20 % of the brain masked).
    Phase A reaches that context and its mask at k* holds the lesion; phase B restarted from the
    whole brain sees the lesion's low large-mask error, below tau, and drops it for good (an
    unmasked voxel is copied). Started from M_k* (the reference's best_threshold_mask) it keeps it."""
    from types import SimpleNamespace

    brain = ball((15.5, 15.5, 15.5), 13)
    x = brain * 1.0
    hf = x + 9.0
    lesion = cube((12, 12, 12), (16, 16, 16)) & brain  # 64 voxels
    normal = brain & ~lesion
    rank = torch.zeros((S, S, S))
    rank[normal] = (torch.randperm(int(normal.sum()), generator=torch.Generator().manual_seed(0)) + 1.0)
    ramp = rank / float(normal.sum())  # normal-tissue error when masked: distinct values in (0, 1]
    small = int(0.2 * brain.sum())

    def rule(x_, h_, masked):
        lesion_err = 4.0 if int(masked.sum()) < small else 0.95
        err = torch.where(lesion, torch.tensor(lesion_err), ramp) * masked
        return x_ + err.sqrt()

    model = Oracle([(hf, x, x)], rule)
    percents = phase_a_percents(5, fine_from=90)
    k = percents.index(99.0)

    def at_99(curve):
        return float(curve[k]), SimpleNamespace(k=k)

    kw = dict(percents=percents, tol=0.01, max_iterations=10)
    (whole,) = run3d(model, [x], [hf], [brain], [0], choose_tau=at_99, **kw)
    (from_k,) = run3d(model, [x], [hf], [brain], [0], choose_tau=at_99, phase_b_start="tau_mask", **kw)
    assert whole.tau == from_k.tau and 0.95 < from_k.tau < 1.0  # the 99 % point: among the top ramp values
    assert not (whole.mask & lesion).any()
    assert bool((from_k.mask & lesion).sum() == lesion.sum()) and from_k.converged
    # phase B's first change is relative to M_k* (lesion + top normal voxels, 1 % of the brain)
    n_k = math.floor(int(brain.sum()) * 0.01)
    assert from_k.changes[0] == pytest.approx(abs(int(from_k.mask.sum()) - n_k) / n_k, abs=2 / n_k)
    # a tau that is not the curve's value at k* (e.g. a fixed tau): phase B from the whole brain
    (fixed,) = run3d(model, [x], [hf], [brain], [0], phase_b_start="tau_mask", **{
        **kw, "choose_tau": lambda c: (float(c[k]) + 1e-3, SimpleNamespace(k=k))})
    assert not (fixed.mask & lesion).any()
    with pytest.raises(ValueError, match="phase_b_start"):
        run3d(model, [x], [hf], [brain], [0], choose_tau=at_99, phase_b_start="other", **kw)


def test_single_step_no_spatial():
    x, hf, brain, h, anomaly = cube_subject(4, (8, 8, 8), (14, 14, 14))
    model = Oracle([(hf, x, h)], inpaint_rule)
    (r,) = run3d(model, [x], [hf], [brain], [0], percents=(), choose_tau=const_tau(1.0),
                          max_iterations=1)
    assert r.iterations_b == 1
    np.testing.assert_array_equal(r.mask.numpy(), ((((x - h) ** 2) > 1.0) & brain).numpy())


class TinyConv3d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d(4), nn.PReLU(),
                                 nn.Conv3d(4, 1, 3, padding=1))
        with torch.no_grad():
            self.net[1].running_mean.uniform_(-0.1, 0.1)
            self.net[1].running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        return self.net(x)


def test_lockstep_equals_one_by_one():
    """3 subjects with different brains: batch 3, batch 2 (queue refill) and one at a time agree."""
    g = torch.Generator().manual_seed(5)
    xs = [torch.randn((16, 16, 16), generator=g) for _ in range(3)]
    hfs = [torch.randn((16, 16, 16), generator=g) for _ in range(3)]
    brains = [ball((7.5, 7.5, 7.5), r, (16, 16, 16)) for r in (5, 6.5, 7.5)]
    model = TinyConv3d()
    kw = dict(percents=phase_a_percents(10, fine_from=None), choose_tau=lambda c: (float(c[6]), None),
              tol=0.05, max_iterations=6)
    seeds = [11, 22, 33]
    together = run3d(model, xs, hfs, brains, seeds, batch_size=3, **kw)
    pairs = run3d(model, xs, hfs, brains, seeds, batch_size=2, **kw)
    alone = [run3d(model, [x], [f], [b], [s], batch_size=1, **kw)[0]
             for x, f, b, s in zip(xs, hfs, brains, seeds)]
    for a, b, c in zip(together, pairs, alone):
        np.testing.assert_allclose(a.curve, c.curve, rtol=1e-5)
        np.testing.assert_allclose(b.curve, c.curve, rtol=1e-5)
        assert a.tau == pytest.approx(c.tau, rel=1e-5)
        assert a.iterations_b == b.iterations_b == c.iterations_b
        np.testing.assert_array_equal(a.mask.numpy(), c.mask.numpy())
        np.testing.assert_array_equal(b.mask.numpy(), c.mask.numpy())
        np.testing.assert_allclose(a.error.numpy(), c.error.numpy(), rtol=1e-5, atol=1e-6)
    # different brains -> different curves (the test would catch mixed-up subjects)
    assert not np.allclose(together[0].curve, together[2].curve)


# ----------------------------------------------------------------------------------------
# IterMask2
# ----------------------------------------------------------------------------------------
def test_itermask2_first_step_and_shrink_stop_rule():
    n = 3
    g = torch.Generator().manual_seed(6)
    x = torch.randn((n, S, S), generator=g)
    hf = x + torch.arange(n, dtype=torch.float32)[:, None, None] + 50  # identifies the slice
    brain = torch.zeros((n, S, S), dtype=torch.bool)
    brain[:, 4:28, 4:28] = True
    brain[1, 4:10] = False
    e1 = torch.rand((n, S, S), generator=g)              # first-model error, known
    anomaly = torch.zeros((n, S, S), dtype=torch.bool)
    anomaly[:, 12:20, 12:20] = True
    entries_first = [(hf[k], x[k], x[k] - e1[k].sqrt()) for k in range(n)]
    entries_masked = [(hf[k], x[k], x[k] - 2.0 * anomaly[k]) for k in range(n)]
    first = Oracle(entries_first, lambda x_, h_, m: h_)
    # masked model: masked pixels -> healthy image (error 4 on the anomaly), visible -> x
    masked = Oracle(entries_masked, lambda x_, h_, m: torch.where(m, h_, x_))
    res = run2d(first, masked, x, hf, brain, [1, 2, 3], tau=1.0, first_percentile=40, tol=0.01,
                        max_iterations=10, batch_size=2)
    # batch_size 2 over 3 slices: the first model sees 2 then 1; the masked model runs slices 0
    # and 1 together for their 2 steps, then slice 2 (refilled) alone for its 2
    assert first.batch_sizes == [2, 1] and masked.batch_sizes == [2, 2, 1, 1]
    for k, r in enumerate(res):
        e1_k = (x[k] - entries_first[k][2]) ** 2  # = e1 up to rounding; computed like the code
        vals = e1_k[brain[k]].numpy()
        m1 = (e1_k > float(np.quantile(vals, 0.4, method="inverted_cdf"))) & brain[k]
        np.testing.assert_array_equal(r.first_mask.numpy(), m1.numpy())
        # M2 = M1 & anomaly (shrink > tol), M3 = M2 (shrink 0 -> stop after 2 masked steps)
        np.testing.assert_array_equal(r.mask.numpy(), (m1 & anomaly[k]).numpy())
        assert r.iterations == 2 and r.converged and r.shrinks[-1] == 0.0
        assert r.shrinks[0] == pytest.approx(1 - int((m1 & anomaly[k]).sum()) / int(m1.sum()))
        np.testing.assert_allclose(r.error.numpy(), (4.0 * (m1 & anomaly[k])).numpy(), rtol=1e-6)
    # a tolerance above the first shrink stops after one masked step
    big = max(r.shrinks[0] for r in res) + 0.01
    res1 = run2d(first, masked, x, hf, brain, [1, 2, 3], tau=1.0, tol=big, max_iterations=10)
    assert all(r.iterations == 1 and r.converged for r in res1)
    assert masked.batch_sizes[4:] == [3]  # the schema's batch (64) holds all 3 slices: one masked step



# ----------------------------------------------------------------------------------------
# IterMask2 with a subject-specific tau per slice (IterMask3D Table 6 "adaptive")
# ----------------------------------------------------------------------------------------
def anomaly_slices(fractions, seed=7):
    """2D slices whose brain (a 24x24 square) holds an anomaly of each given fraction of it:
    x = h + 2 inside the anomaly; tiny healthy errors elsewhere (a rising, near-flat curve)."""
    n, g = len(fractions), torch.Generator().manual_seed(seed)
    brain = torch.zeros((n, S, S), dtype=torch.bool)
    brain[:, 4:28, 4:28] = True
    h = torch.randn((n, S, S), generator=g)
    anomaly = torch.zeros_like(brain)
    for k, f in enumerate(fractions):
        rows = round(f * 24)
        anomaly[k, 4:4 + rows, 4:28] = True  # rows x 24 pixels: fraction rows / 24 of the brain
    wobble = 1e-3 * torch.rand((n, S, S), generator=g)
    x = h + 2.0 * anomaly + wobble
    hf = x + 60.0 + torch.arange(n, dtype=torch.float32)[:, None, None]  # identifies the slice
    return x, hf, brain, h, anomaly


def test_itermask2_takes_one_tau_per_slice():
    x, hf, brain, h, anomaly = anomaly_slices([0.25, 0.25])
    entries = [(hf[k], x[k], h[k]) for k in range(2)]
    first = Oracle(entries, lambda x_, h_, m: h_)
    masked = Oracle(entries, lambda x_, h_, m: torch.where(m, h_, x_))
    # error 4 (+ wobble) on the anomaly, 1e-6-scale elsewhere: tau 1 keeps it, tau 10 removes it
    res = run2d(first, masked, x, hf, brain, [1, 2], tau=[1.0, 10.0], max_iterations=5)
    np.testing.assert_array_equal(res[0].mask.numpy(), anomaly[0].numpy())
    assert not res[1].mask.any()
    with pytest.raises(ValueError, match="one tau per slice"):
        run2d(first, masked, x, hf, brain, [1, 2], tau=[1.0])


def test_subject_tau_of_a_slice_lands_at_its_anomaly_fraction():
    """Known answer: a masked network that reconstructs the healthy image (perfect outside the
    anomaly but for a 1e-3 wobble, off by 2 inside) gives a phase-A curve that stays near 0
    until only the anomaly's share f of the brain is left, then jumps to ~4: k* sits at
    t = 100 (1 - f), up to the smoothed derivative's window of 5 (2 steps early), so
    1 - t*/100 ~ f, and [e > tau] holds the anomaly and little else."""
    from itermask.core.iterative_mask_2d import phase_a_taus
    from itermask.core.threshold import subject_threshold

    fractions = [1 / 6, 1 / 3]
    x, hf, brain, h, anomaly = anomaly_slices(fractions)
    masked = Oracle([(hf[k], x[k], h[k]) for k in range(2)], lambda x_, h_, m: h_)
    percents = phase_a_percents(1, fine_from=None)

    def choose(curve):
        fit = subject_threshold(curve, gamma=0.01, t=np.asarray(percents), **threshold_options())
        return fit.tau, fit

    kw = {k: v for k, v in run2d_settings().items() if k in ("variant", "device", "amp")}
    res = phase_a_taus(masked, x, hf, brain, [5, 6], percents=percents, choose_tau=choose, batch_size=2, **kw)
    n = int(brain[0].sum())
    for k, (r, f) in enumerate(zip(res, fractions)):
        assert len(r.curve) == 100 and r.tau_info.fallback is None
        assert abs((100 - r.tau_info.t_star) / 100 - f) <= 0.03
        kept = (((x[k] - h[k]) ** 2) > r.tau) & brain[k]
        assert bool(kept[anomaly[k]].all()) and int(kept.sum()) - int(anomaly[k].sum()) <= 0.03 * n
    assert res[0].tau_info.t_star > res[1].tau_info.t_star  # the larger anomaly stops earlier
    # one lockstep pool equals each slice alone (phase-A noise from each slice's own seed)
    alone = phase_a_taus(masked, x[1:], hf[1:], brain[1:], [6], percents=percents, choose_tau=choose,
                         batch_size=1, **kw)
    np.testing.assert_array_equal(alone[0].curve, res[1].curve)


# ----------------------------------------------------------------------------------------
# The mask each iteration feeds the network (METHOD.md §6), recomputed from the recorded errors
# ----------------------------------------------------------------------------------------
class MaskRecorder(nn.Module):
    """Reconstruction = the masked-image channel + ``k`` * the HF channel (or ``k`` * HF alone
    for an HF-only input): unmasked voxels come back as x + k·hf, masked ones as noise + k·hf,
    so the error depends on the mask fed in. Records every input and output."""

    def __init__(self, k: float = 0.5) -> None:
        super().__init__()
        self.k = k
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []

    def forward(self, inp):
        out = (inp[:, :1] if inp.shape[1] == 2 else 0.0) + self.k * inp[:, -1:]
        self.inputs.append(inp.clone())
        self.outputs.append(out.clone())
        return out


def fed_mask(inp: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The mask the network saw: voxels whose image channel is the fill noise, not x
    ((1 - 0)·x + 0·eps is exactly x; eps ~ N(0, 1) never equals x)."""
    return inp[0, 0] != x


def test_itermask3d_feeds_the_current_mask_and_phase_b_restarts_from_the_brain():
    """Phase A: call 1 gets M_0 = brain, call i + 1 gets M_i = [e_i > T_i] & brain with e_i from
    call i's reconstruction and T_i its inverted-cdf quantile at percents[i]; phase B's first
    call gets the whole brain again, then [e > tau] & brain of the previous call (not ANDed
    with the previous mask)."""
    n = 12
    g = torch.Generator().manual_seed(21)
    x = torch.randn((n, n, n), generator=g)
    hf = torch.randn((n, n, n), generator=g)
    brain = ball((5.5, 5.5, 5.5), 5, (n, n, n))
    percents = phase_a_percents(20, fine_from=None)
    tau = 0.8
    model = MaskRecorder()
    (r,) = run3d(model, [x], [hf], [brain], [4], percents=percents, choose_tau=const_tau(tau),
                          tol=0.0, max_iterations=3)
    n_a = len(percents)
    assert len(model.inputs) == n_a + 3 and r.iterations_a == n_a and r.iterations_b == 3
    masks = [fed_mask(inp, x) for inp in model.inputs]
    errors = [torch.where(brain, (x - out[0, 0]) ** 2, torch.zeros(())) for out in model.outputs]
    want = brain
    for i, p in enumerate(percents):
        np.testing.assert_array_equal(masks[i].numpy(), want.numpy(), err_msg=f"phase A call {i + 1}")
        t = np.quantile(errors[i][brain].numpy(), p / 100, method="inverted_cdf")
        assert r.curve[i] == pytest.approx(float(t), rel=1e-6)
        want = (errors[i] > float(t)) & brain
        # the masks move around (not nested), so a mask built from a stale M would differ
        if 0 < i < n_a - 1:
            assert int((want & ~masks[i]).sum()) > 0
    # phase B: the whole brain again, then [e > tau] & brain of the previous step
    np.testing.assert_array_equal(masks[n_a].numpy(), brain.numpy())
    for j in (1, 2):
        want = (errors[n_a + j - 1] > tau) & brain
        np.testing.assert_array_equal(masks[n_a + j].numpy(), want.numpy(), err_msg=f"phase B call {j + 1}")
    np.testing.assert_array_equal(r.mask.numpy(), ((errors[-1] > tau) & brain).numpy())


def test_itermask2_first_step_uses_the_hf_only_model_then_feeds_the_shrinking_mask():
    """IterMask2: the first-iteration model gets the HF channel alone; the masked model's first
    call gets M_1 = brain pixels above the 40th error percentile, each later call
    M_{k+1} = M_k & [e_k > tau] (never a pixel outside the previous mask)."""
    n, size = 2, 16
    g = torch.Generator().manual_seed(22)
    x = torch.randn((n, size, size), generator=g)
    hf = torch.randn((n, size, size), generator=g)
    brain = torch.zeros((n, size, size), dtype=torch.bool)
    brain[:, 2:14, 3:13] = True
    brain[1, 2:5] = False
    tau = 0.5
    first, masked = MaskRecorder(k=0.7), MaskRecorder(k=0.5)
    res = run2d(first, masked, x, hf, brain, [1, 2], tau=tau, first_percentile=40, tol=0.0,
                        max_iterations=3, batch_size=2)
    assert len(first.inputs) == 1 and first.inputs[0].shape == (n, 1, size, size)
    torch.testing.assert_close(first.inputs[0][:, 0], hf, rtol=0, atol=0)
    assert len(masked.inputs) == 3 and all(inp.shape == (n, 2, size, size) for inp in masked.inputs)
    for k, r in enumerate(res):
        e1 = torch.where(brain[k], (x[k] - first.outputs[0][k, 0]) ** 2, torch.zeros(()))
        t1 = np.quantile(e1[brain[k]].numpy(), 0.4, method="inverted_cdf")
        want = (e1 > float(t1)) & brain[k]
        np.testing.assert_array_equal(r.first_mask.numpy(), want.numpy())
        for step, (inp, out) in enumerate(zip(masked.inputs, masked.outputs)):
            np.testing.assert_array_equal(fed_mask(inp[k : k + 1], x[k]).numpy(), want.numpy(),
                                          err_msg=f"slice {k} masked call {step + 1}")
            e = torch.where(brain[k], (x[k] - out[k, 0]) ** 2, torch.zeros(()))
            # outside the mask e = (k·hf)^2 often exceeds tau: only the AND keeps it out
            assert int(((e > tau) & brain[k] & ~want).sum()) > 0
            want = want & (e > tau)
            assert 0 < int(want.sum())
        np.testing.assert_array_equal(r.mask.numpy(), want.numpy())
        assert r.iterations == 3
