"""DDPM baseline, image space (METHOD.md §10): the schedule and forward process against the
closed form q(x_t | x_0), the reverse step against MONAI's, the respaced (demo) schedule,
the initial mask and inpainting, and a tiny train + infer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines_e2e import infer, load, result, train
from diffusion_support import context, fill_with_one, tiny_settings, zero_eps
from support import experiment_settings

from itermask import methods
from itermask.errors import ConfigError
from itermask.methods._diffusion import (SliceNoise, add_noise, make_scheduler, model_step, reference_step,
                                         reverse_step)

torch.set_num_threads(1)


def test_reference_schedule_is_monais_linear_1000_steps():
    from monai.networks.schedulers import DDPMScheduler

    s, ref = make_scheduler(1000), DDPMScheduler(num_train_timesteps=1000)
    torch.testing.assert_close(s.betas, torch.linspace(1e-4, 0.02, 1000), rtol=0, atol=0)
    torch.testing.assert_close(s.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=0)
    assert s.clip_sample is False and s.prediction_type == "epsilon"


def test_respaced_schedule_keeps_the_reference_alpha_bar():
    """A 20-step model: step j is reference step 50 (j + 1) - 1 with the same alpha_bar."""
    ref, s = make_scheduler(1000), make_scheduler(20)
    idx = torch.arange(20) * 50 + 49
    torch.testing.assert_close(s.alphas_cumprod, ref.alphas_cumprod[idx], rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.cumprod(s.alphas.double(), 0).float(), s.alphas_cumprod, rtol=1e-5, atol=0)
    assert [model_step(t, 20) for t in (0, 49, 50, 200, 999)] == [0, 0, 0, 3, 19]
    assert reference_step(3, 20) == 199 and model_step(200, 1000) == 200
    with pytest.raises(ValueError, match="divide 1000"):
        make_scheduler(300)


@pytest.mark.parametrize("timesteps, j", [(1000, 200), (1000, 999), (20, 3)])
def test_forward_process_matches_the_closed_form(timesteps, j):
    """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I): mean and variance of a large draw,
    through MONAI's add_noise (training) and ours (inference)."""
    s = make_scheduler(timesteps)
    abar = float(s.alphas_cumprod[j])
    x0 = torch.full((400_000,), 1.7)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=g)
    ours = add_noise(s, x0, j, noise)
    monai = s.add_noise(x0, noise, torch.full((1,), j, dtype=torch.long))
    torch.testing.assert_close(ours, monai, rtol=1e-6, atol=1e-6)
    assert float(ours.mean()) == pytest.approx(np.sqrt(abar) * 1.7, abs=4e-3)
    assert float(ours.var()) == pytest.approx(1 - abar, rel=1e-2)


@pytest.mark.parametrize("j", [0, 1, 57])
def test_reverse_step_is_monais_step_without_clipping(j):
    s = make_scheduler(100)
    g = torch.Generator().manual_seed(3)
    x, eps = 4 * torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    expected, _ = s.step(eps, j, x, generator=torch.Generator().manual_seed(5))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(reverse_step(s, eps, j, x, z), expected, rtol=1e-5, atol=1e-5)


def test_settings_checks():
    with pytest.raises(ConfigError, match="divide 1000"):
        experiment_settings("ddpm", network={"timesteps": 300})
    with pytest.raises(ConfigError, match="attention_levels"):
        experiment_settings("ddpm", network={"attention_levels": [True]})
    with pytest.raises(ConfigError, match="norm_num_groups"):
        experiment_settings("ddpm", network={"diffusion_channels": [24, 48, 48]})
    with pytest.raises(ConfigError, match="no binary mask"):
        experiment_settings("ddpm", infer={"score": "mask_size"})
    s = experiment_settings("ddpm")
    assert s.network["timesteps"] == 1000 and list(s.network["diffusion_channels"]) == [128, 256, 256]


def to_zero(sched):
    """A stand-in network whose predicted x_0 is 0 (eps = x_t / sqrt(1 - abar_t)): it
    'reconstructs' every image as 0, so at noise_t = inpaint_t = 0 x_hat = 0 exactly."""
    return lambda x, t: x / (1 - sched.alphas_cumprod[int(t[0])]).sqrt()


def test_initial_mask_and_inpainting():
    """Known answer: x = 0 with a blob of 5 (slices' units); the model gives x_hat = 0. With
    threshold 1 the initial mask is the blob, the inpainted image x outside it and 0 inside,
    the map 25 on the blob and 0 elsewhere; with threshold 10 the mask is empty and the map 0."""
    ddpm, sched = methods.get("ddpm"), make_scheduler(1000)
    x = torch.zeros(2, 1, 16, 16)
    x[:, :, 4:8, 4:8] = 5.0
    blob = x > 0
    brain = torch.ones_like(blob)
    s = tiny_settings("ddpm", noise_t=0, inpaint_t=0, mask_threshold=1.0)
    recon, error, stats = ddpm.anomaly(to_zero(sched), sched, x, brain, SliceNoise([0, 1], "cpu"),
                                       context(s, timesteps=1000), None)
    assert stats["initial_mask_fraction"].tolist() == pytest.approx([16 / 256] * 2)
    assert torch.equal(recon[~blob], x[~blob]) and torch.all(recon[blob].abs() < 1e-5)
    torch.testing.assert_close(error, torch.where(blob, 25.0, 0.0), rtol=1e-5, atol=1e-4)
    s = tiny_settings("ddpm", noise_t=0, inpaint_t=0, mask_threshold=10.0)
    recon, error, stats = ddpm.anomaly(to_zero(sched), sched, x, brain, SliceNoise([0, 1], "cpu"),
                                       context(s, timesteps=1000), None)
    assert float(stats["initial_mask_fraction"].max()) == 0.0
    assert torch.equal(recon, x) and torch.equal(error, torch.zeros_like(x))


def test_inpainting_replaces_the_masked_region_by_the_reverse_chain():
    """Known answer with inpaint_t > 0, where RePaint and the plain stitch disagree. x = 0.75
    with a blob of 5 (slices' units, scale 3: 0.25 and 5/3 for the model); the stand-in network
    (`fill_with_one`) removes the blob when denoising from noise_t 0 (x_hat = 0 exactly, so the
    initial mask at threshold 1 is the blob and the stitched image is 0 there), while the
    reverse chain from inpaint_t 5 moves the masked region to 1 (3 in slices' units). So the
    inpainted image is 3 on the blob (not the stitched 0), x exactly elsewhere, and the map
    (x - x_inpainted)^2 is (5 - 3)^2 = 4 on the blob and 0 elsewhere (25 from the stitch)."""
    ddpm, sched = methods.get("ddpm"), make_scheduler(1000)
    x = torch.full((2, 1, 16, 16), 0.75)
    x[:, :, 4:8, 4:8] = 5.0
    blob = x > 1
    brain = torch.ones_like(blob)
    s = tiny_settings("ddpm", noise_t=0, inpaint_t=5, resample_steps=1, mask_threshold=1.0)
    ctx = context(s, timesteps=1000)
    assert model_step(5, 1000) == 5
    recon, error, stats = ddpm.anomaly(fill_with_one(sched), sched, x, brain, SliceNoise([0, 1], "cpu"), ctx, None)
    assert stats["initial_mask_fraction"].tolist() == pytest.approx([16 / 256] * 2)
    assert torch.equal(recon[~blob], x[~blob])
    torch.testing.assert_close(recon[blob], torch.full_like(recon[blob], 3.0), rtol=0, atol=2e-3)
    torch.testing.assert_close(error, (x - recon) ** 2, rtol=0, atol=0)
    torch.testing.assert_close(error, torch.where(blob, 4.0, 0.0), rtol=0, atol=1e-2)
    assert torch.equal(error[~blob], torch.zeros_like(error[~blob]))


def test_train_and_infer(tmp_path):
    s = tiny_settings("ddpm")
    model, logs = train(tmp_path, s, 2)
    assert any("step 4/4" in line for line in logs) and (model.parent / "loss.png").exists()
    assert "val_loss" in (model.parent / "loss.tsv").read_text().splitlines()[0].split("\t")
    out = infer(tmp_path, model, s, 2)
    for cond, kind in (("healthy", "slicewise"), ("lesion", "2d")):
        f, r = out / cond, result(out / cond)
        assert r["method"] == "ddpm" and r["kind"] == kind and r["score_name"] == "mean_error"
        assert r["diffusion"]["timesteps"] == 20 and r["diffusion"]["noise_t"] == 199
        assert not (f / "mask.nii.gz").exists()
        error, brain = load(f, "error.nii.gz"), load(f, "brainmask.nii.gz") > 0
        assert np.all(error[~brain] == 0) and r["score"] == pytest.approx(float(error[brain].mean()), rel=1e-5)
    again = infer(tmp_path / "again", model, s, 2)  # seeded: the same maps
    np.testing.assert_array_equal(load(out / "lesion", "error.nii.gz"), load(again / "lesion", "error.nii.gz"))
