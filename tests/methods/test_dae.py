"""DAE baseline (METHOD.md §10): coarse noise (piecewise (bi/tri)linear on a grid of cells,
randomly rolled), confined to the brain, with the configured sign and sigma, seeded per
(seed, sample, epoch); loss MSE in the brain; training, exact resume and inference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines_e2e import infer, load, result, settings_of, train
from support import experiment_settings

from itermask import methods
from itermask.methods.dae import coarse_noise, noise_batch, upsample

torch.set_num_threads(1)


def noise(seed: int, shape, **kw) -> np.ndarray:
    args = {"sigma": 1.0, "cell": 8, "sign": "both", "rule": "abs", **kw}
    return coarse_noise(np.random.default_rng(seed), tuple(shape), **args)


def test_upsampling_known_answer():
    """Linear interpolation with the coarse grid's corner points on the image's corners
    (``F.upsample_bilinear``, the official code's call): [0, 4] onto 5 points is 0, 1, .., 4."""
    np.testing.assert_allclose(upsample(np.array([0.0, 4.0]), (5,)), [0, 1, 2, 3, 4])
    np.testing.assert_allclose(upsample(np.array([0.0, 3.0, 0.0]), (7,)), [0, 1, 2, 3, 2, 1, 0], atol=1e-6)
    two = upsample(np.array([[0.0, 4.0], [8.0, 12.0]]), (3, 5))  # bilinear = sum of the 1D ramps
    np.testing.assert_allclose(two, np.add.outer([0, 4, 8], [0, 1, 2, 3, 4]))


def knots(n: int, cells: int) -> set[int]:
    """Voxels where the upsampled noise's second difference along an axis of n voxels may be
    non-zero: each interior knot at k (n - 1) / (cells - 1) (both neighbours when it falls
    between voxels), and the two ends (the roll joins them)."""
    out = {0, n - 1}
    for k in range(1, cells - 1):
        p = k * (n - 1) / (cells - 1)
        out |= {int(np.floor(p)), int(np.ceil(p))}
    return out


def roll_of(n_axis: np.ndarray, n: int, cells: int) -> set[int]:
    """The circular shifts s for which the kinks of ``n_axis`` lie on the shifted knot set."""
    allowed = knots(n, cells)
    kinked = set(int(i) for i in n_axis)
    return {s for s in range(n) if all((i - s) % n in allowed for i in kinked)}


@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 32)])
def test_noise_is_coarse(shape):
    """Along every axis the noise is linear between the knots of a grid of ceil(n / 8) points:
    the (circular) second difference vanishes except at the (rolled) knots. White noise would
    have no zero second differences."""
    n = noise(3, shape)
    assert n.std() > 0.1
    for axis in range(len(shape)):
        d2 = np.roll(n, -1, axis) - 2 * n + np.roll(n, 1, axis)
        kinked = np.flatnonzero(np.abs(d2).max(axis=tuple(a for a in range(len(shape)) if a != axis)) > 1e-5)
        assert 0 < len(kinked) <= len(knots(shape[axis], -(-shape[axis] // 8)))
        assert roll_of(kinked, shape[axis], -(-shape[axis] // 8))


def test_noise_is_rolled():
    """The roll is random: the shifts that explain the kink positions differ between draws."""
    shifts = set()
    for seed in range(8):
        n = noise(seed, (64, 64))
        d2 = np.roll(n, -1, 0) - 2 * n + np.roll(n, 1, 0)
        shifts.add(min(roll_of(np.flatnonzero(np.abs(d2).max(1) > 1e-5), 64, 8)))
    assert len(shifts) > 2


def test_default_grid_is_16_for_128_pixel_slices():
    """The schema's cell gives the official code's 16 x 16 grid on 128^2 slices."""
    cell = experiment_settings("dae", network={"spatial_dims": 2}, train={"rot90_p": 0.0}).network["noise_cell"]
    assert -(-128 // cell) == 16
    n = noise(0, (128, 128), cell=cell)
    d2 = np.roll(n, -1, 0) - 2 * n + np.roll(n, 1, 0)
    assert roll_of(np.flatnonzero(np.abs(d2).max(1) > 1e-5), 128, 16)


@pytest.mark.parametrize("sign, rule, mean, mean_sq, frac_zero", [
    ("both", "abs", 0.0, 1.0, 0.0),
    ("positive", "abs", np.sqrt(2 / np.pi), 1.0, 0.0),
    ("negative", "abs", -np.sqrt(2 / np.pi), 1.0, 0.0),
    ("positive", "clip", 1 / np.sqrt(2 * np.pi), 0.5, 0.5),
    ("negative", "clip", -1 / np.sqrt(2 * np.pi), 0.5, 0.5),
])
def test_sign_and_sigma_on_a_large_draw(sign, rule, mean, mean_sq, frac_zero):
    """With cell 1 the noise is the coarse draw itself: N(0, sigma) folded (abs: |n|, E n^2 =
    sigma^2) or clipped (clip: max(n, 0), E n^2 = sigma^2 / 2, half zeros)."""
    sigma = 1.2
    n = noise(0, (400, 400), sigma=sigma, cell=1, sign=sign, rule=rule).astype(np.float64)
    assert n.mean() == pytest.approx(mean * sigma, abs=0.01)
    assert (n**2).mean() == pytest.approx(mean_sq * sigma**2, rel=0.02)
    assert (n == 0).mean() == pytest.approx(frac_zero, abs=0.01)
    if sign != "both":  # interpolation keeps the sign, at any cell size
        coarse = noise(0, (128, 128), sign=sign, rule=rule)
        assert np.all(coarse >= 0) if sign == "positive" else np.all(coarse <= 0)
        assert np.any(coarse != 0)


def test_sigma_scales_the_same_draw():
    np.testing.assert_allclose(noise(4, (48, 48), sigma=3.0), 2.5 * noise(4, (48, 48), sigma=1.2), rtol=1e-5, atol=1e-6)


def _batch(settings, ids, *keys):
    brain = np.zeros((len(ids), 32, 32), bool)
    brain[:, 6:26, 4:20] = True
    return noise_batch(settings, brain, np.asarray(ids), *keys), brain


def test_noise_is_confined_to_the_brain_and_seeded_per_sample_and_epoch():
    s = experiment_settings("dae", network={"spatial_dims": 2}, train={"rot90_p": 0.0})
    b, brain = _batch(s, [0, 3], "train", 0)
    n = b["noise"][:, 0].numpy()
    assert b["brain"].dtype == torch.bool and torch.equal(b["brain"][:, 0], torch.from_numpy(brain))
    assert np.all(n[~brain] == 0) and np.mean(n[brain] != 0) > 0.99
    # a sample's noise depends on (seed, sample, epoch), not on the rest of the batch
    np.testing.assert_array_equal(_batch(s, [3], "train", 0)[0]["noise"][0], b["noise"][1])
    assert not np.array_equal(_batch(s, [3], "train", 1)[0]["noise"][0], b["noise"][1])
    other = experiment_settings("dae", network={"spatial_dims": 2}, train={"rot90_p": 0.0}, seed=1)
    assert not np.array_equal(_batch(other, [3], "train", 0)[0]["noise"][0], b["noise"][1])


def test_loss_is_the_mse_in_the_brain():
    """Known answer: an identity network leaves the noise, so loss = mean of noise^2 in the brain."""
    dae = methods.get("dae")
    s = experiment_settings("dae", network={"spatial_dims": 2}, train={"rot90_p": 0.0})
    b, brain = _batch(s, [0, 1], "train", 0)
    x = torch.randn(2, 1, 32, 32)
    loss = float(dae.losses(s, {"net": lambda t: t}, {"image": x, **b}, None)["net"])
    assert loss == pytest.approx(float((b["noise"][:, 0].numpy()[brain] ** 2).mean()), rel=1e-5)
    outside = x + 100.0 * ~b["brain"]  # errors outside the brain do not count
    assert float(dae.losses(s, {"net": lambda t: outside}, {"image": x, **b}, None)["net"]) == 0.0


def test_noise_settings_are_in_the_model_meta():
    s = experiment_settings("dae", network={"noise_sigma": 3.0, "noise_sign": "negative"})
    meta = methods.get("dae").build_networks(s, (32, 32, 32))
    assert meta["network"]["noise_sigma"] == 3.0 and meta["network"]["noise_sign"] == "negative"
    assert meta["network"]["skip_connections"] is True and meta["spatial_dims"] == 3


@pytest.mark.parametrize("dims", [3, 2])
def test_train_resume_and_infer(tmp_path, dims):
    s = settings_of("dae", dims, network={"noise_sign": "positive"})
    model, _ = train(tmp_path, s, dims)
    # a run killed after 2 steps and resumed ends with the same weights (the noise is keyed)
    train(tmp_path, s, dims, out="r", max_steps_this_run=2)
    resumed, logs = train(tmp_path, s, dims, out="r")
    assert any("resuming" in line for line in logs)
    a, b = torch.load(model, weights_only=True), torch.load(resumed, weights_only=True)
    for k, t in a["state_dicts"]["net"].items():
        torch.testing.assert_close(t, b["state_dicts"]["net"][k], rtol=0, atol=0)
    out = infer(tmp_path, model, s, dims)
    for cond in ("healthy", "lesion"):
        r, f = result(out / cond), out / cond
        error, brain = load(f, "error.nii.gz"), load(f, "brainmask.nii.gz") > 0
        assert r["method"] == "dae" and r["score"] == pytest.approx(float(error[brain].mean()), rel=1e-5)
        assert not (f / "mask.nii.gz").exists()
