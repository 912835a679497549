"""AutoDDPM baseline (METHOD.md §10): the stitch keeps x outside the mask, RePaint's known
region is x noised by the forward process at every step (x itself at the end), the scaled
residual (LPIPS off) and LPIPS as a factor when given, per-slice seeding, tiny train + infer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines_e2e import infer, load, result, train
from diffusion_support import RecordingNoise, context, fill_with_one, tiny_settings, zero_eps

from itermask import methods
from itermask.errors import InputError
from itermask.methods._diffusion import (SliceNoise, add_noise, dilate, make_scheduler, repaint, reverse_step,
                                         stitch)
from itermask.methods.autoddpm import scaled_residual

torch.set_num_threads(1)


def test_stitch_keeps_x_exactly_outside_the_mask():
    g = torch.Generator().manual_seed(0)
    x, x_hat = 3 * torch.randn(2, 1, 16, 16, generator=g), torch.randn(2, 1, 16, 16, generator=g)
    m = torch.rand(2, 1, 16, 16, generator=g) > 0.7
    out = stitch(x, x_hat, m)
    assert torch.equal(out[~m], x[~m]) and torch.equal(out[m], x_hat[m])


def test_dilation_is_3x3():
    m = torch.zeros(1, 1, 7, 7, dtype=torch.bool)
    m[0, 0, 3, 3] = True
    d = dilate(m)
    assert d.sum() == 9 and torch.all(d[0, 0, 2:5, 2:5])


def test_repaint_known_region_is_the_noised_x_at_every_step():
    """Outside the mask the image is, after every combination, the known region; that region
    is x under q(x_{k-1} | x_0): (known - sqrt(abar) x) / sqrt(1 - abar) is standard normal;
    the final image is x exactly outside the mask."""
    sched = make_scheduler(20)
    g = torch.Generator().manual_seed(1)
    x = 2 * torch.randn(1, 1, 64, 64, generator=g)
    m = torch.zeros_like(x, dtype=torch.bool)
    m[..., 20:40, 20:40] = True
    seen = []

    def observe(k, u, image, known):
        assert torch.equal(image[~m], known[~m])
        if k > 0:
            a = sched.alphas_cumprod[k - 1]
            z = (known[~m] - a.sqrt() * x[~m]) / (1 - a).sqrt()
            assert abs(float(z.mean())) < 0.1 and float(z.std()) == pytest.approx(1.0, abs=0.06)
        else:
            assert torch.equal(known, x)
        seen.append((k, u))

    out = repaint(zero_eps, sched, x, stitch(x, torch.zeros_like(x), m), m, 3, 5, SliceNoise([0], "cpu"), observe)
    assert seen == [(k, u) for k in (3, 2, 1) for u in range(5)] + [(0, 0)]
    assert torch.equal(out[~m], x[~m]) and not torch.equal(out[m], x[m])


def test_repaint_last_step_denoises_once():
    """Inside the mask the final image is one reverse step (k = 0, no noise) of the image after
    the last round at k = 1, whatever the number of rounds: RePaint's resampling re-noises
    between rounds, and there is nothing to re-noise after the last step. A network predicting
    a constant noise makes a repeated final step visible (it moves the image again)."""
    sched = make_scheduler(20)
    x = 2 * torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    m = torch.zeros_like(x, dtype=torch.bool)
    m[..., 8:24, 8:24] = True

    def const_eps(image, t):
        return torch.full_like(image, 0.3)

    images = {}

    def observe(k, u, image, known):
        images[k, u] = image.clone()

    outs = [repaint(const_eps, sched, x, stitch(x, torch.zeros_like(x), m), m, 2, rounds, SliceNoise([0], "cpu"),
                    observe) for rounds in (1, 5)]
    expected = reverse_step(sched, torch.full_like(x, 0.3), 0, images[1, 4], torch.zeros_like(x))
    torch.testing.assert_close(outs[1][m], expected[m])
    final = [repaint(const_eps, sched, x, x, m, 0, rounds, SliceNoise([0], "cpu")) for rounds in (1, 5)]
    torch.testing.assert_close(final[0], final[1])


def test_repaint_unknown_region_is_the_reverse_step_of_the_previous_image():
    """Inside the mask every combined image is one reverse step, at the current k, of the image
    before that round, with that round's draw: the image after the previous round (the
    noised start at the first), re-noised by q(x_k | x_{k-1}) between rounds at the same k.
    The draws are replayed from a recording generator (per round: the re-noising draw after
    the first round, the known region's draw, the reverse step's); a deterministic network
    that depends on the image and the step makes a step from another image or another k, or
    without the draw, visible. No draw enters at k = 0 (no variance)."""
    sched = make_scheduler(20)
    g = torch.Generator().manual_seed(4)
    x = 2 * torch.randn(2, 1, 16, 16, generator=g)
    m = torch.zeros_like(x, dtype=torch.bool)
    m[..., 4:12, 3:10] = True
    start = stitch(x, torch.zeros_like(x), m)

    def net(image, t):
        return 0.5 * torch.sin(image) + 0.02 * t.view(-1, 1, 1, 1).float()

    j, rounds = 3, 3
    noise, state, seen = RecordingNoise([0, 1]), {}, []

    def observe(k, u, image, known):
        if not state:  # the first draw noised the start to step j
            state.update(n=1, last=add_noise(sched, start, j, noise.draws[0]))
        new, state["n"] = noise.draws[state["n"]:], len(noise.draws)
        prev = state["last"]
        if k > 0:
            assert len(new) == (3 if u > 0 else 2)
            if u > 0:
                beta = sched.betas[k]
                prev = (1 - beta).sqrt() * prev + beta.sqrt() * new[0]
            torch.testing.assert_close(known, add_noise(sched, x, k - 1, new[-2]), rtol=0, atol=0)
        z = new[-1] if k > 0 else torch.zeros_like(x)
        step = reverse_step(sched, net(prev, torch.full((2,), k)), k, prev, z)
        torch.testing.assert_close(image[m], step[m], rtol=1e-6, atol=1e-6)
        assert not torch.allclose(image[m], prev[m], atol=1e-3)
        state["last"] = image.clone()
        seen.append((k, u))

    out = repaint(net, sched, x, start, m, j, rounds, noise, observe)
    assert seen == [(k, u) for k in (3, 2, 1) for u in range(rounds)] + [(0, 0)]
    assert torch.equal(out, state["last"]) and torch.equal(out[~m], x[~m])


def test_scaled_residual_known_answer():
    """|x - x_hat| / its per-slice 95th percentile, clipped to [0, 1]."""
    x = torch.arange(100, dtype=torch.float32).view(1, 1, 10, 10)
    r = scaled_residual(x, torch.zeros_like(x), 95)
    q = float(np.percentile(np.arange(100), 95))  # 94.05 (linear interpolation, as torch.quantile)
    torch.testing.assert_close(r, (x / q).clamp(0, 1))
    assert float(r.max()) == 1.0 and int((r == 1).sum()) == 5


def _lpips_file(tmp_path, value: float) -> str:
    class Constant(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.value = value

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.full_like(a[:, :1], self.value)

    path = str(tmp_path / f"lpips_{value}.pt")
    torch.jit.save(torch.jit.script(Constant()), path)
    return path


def _run(s, x, brain):
    auto = methods.get("autoddpm")
    ctx = context(s)
    aux = auto.prepare(ctx)
    out = auto.anomaly(zero_eps, make_scheduler(20), x, brain, SliceNoise([0, 1], "cpu"), ctx, aux)
    return out, auto.record_extra(ctx, aux)


def test_lpips_off_gives_the_scaled_residual_and_on_multiplies_it(tmp_path):
    """The zero-eps model at noise_t 0 maps x to x / sqrt(abar_0) + noise: a fixed residual.
    LPIPS off: mask from the scaled residual at mask_threshold_no_lpips, map |x - x_in| x r.
    A constant LPIPS of 1 at the same threshold gives the same; a constant 0.5 with half the
    threshold the same mask and half the map."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1, 16, 16, generator=g)
    brain = torch.ones_like(x, dtype=torch.bool)
    common = {"noise_t": 0, "inpaint_t": 0, "mask_threshold_no_lpips": 0.4}
    (r0, e0, st0), rec0 = _run(tiny_settings("autoddpm", **common), x, brain)
    assert rec0["mask_map"] == "scaled_residual" and rec0["lpips_model"] is None
    assert 0 < float(st0["mask_fraction"].mean()) < 1
    one = _lpips_file(tmp_path, 1.0)
    (r1, e1, st1), rec1 = _run(tiny_settings("autoddpm", lpips_model=one, mask_threshold=0.4, **common), x, brain)
    assert rec1["mask_map"] == "scaled_residual_x_lpips" and rec1["lpips_model"] == one
    torch.testing.assert_close(e1, e0)
    torch.testing.assert_close(st1["mask_fraction"], st0["mask_fraction"])
    half = _lpips_file(tmp_path, 0.5)
    (r2, e2, st2), _ = _run(tiny_settings("autoddpm", lpips_model=half, mask_threshold=0.2, **common), x, brain)
    torch.testing.assert_close(st2["mask_fraction"], st0["mask_fraction"])
    torch.testing.assert_close(e2, e0 / 2)


def test_map_known_answer_is_the_inpainting_error_times_the_scaled_residual():
    """Known answer of the map |x - x_inpainted| x c (LPIPS off: c the scaled residual), with
    the inpainted image in closed form. x = 0.75 with a blob of 5 (slices' units, scale 3:
    0.25 and 5/3 for the model); the stand-in network (`fill_with_one`) gives x_hat = 0 exactly
    from noise_t 0, so r = x / 3, its 95th percentile the blob's 5/3 (16 of 256 pixels), c = 1
    on the blob and 0.15 elsewhere; at threshold 0.5 the mask is the blob dilated by 3x3, in
    the brain (a column of the dilation lies outside it). RePaint from inpaint_t 5 makes the
    mask 1 (3 in slices' units), x exactly outside. So the map is |5 - 3| x 1 = 2 on the blob,
    |0.75 - 3| x 0.15 = 0.3375 on the rest of the mask, and 0 outside it."""
    auto, sched = methods.get("autoddpm"), make_scheduler(1000)
    x = torch.full((2, 1, 16, 16), 0.75)
    x[:, :, 4:8, 4:8] = 5.0
    blob = x > 1
    brain = torch.ones_like(blob)
    brain[..., 3] = False
    mask = torch.zeros_like(blob)
    mask[..., 3:9, 4:9] = True  # the dilated blob, less the brain's missing column 3
    s = tiny_settings("autoddpm", noise_t=0, inpaint_t=5, resample_steps=5, mask_threshold_no_lpips=0.5)
    ctx = context(s, timesteps=1000)
    recon, error, stats = auto.anomaly(fill_with_one(sched), sched, x, brain, SliceNoise([0, 1], "cpu"), ctx,
                                       auto.prepare(ctx))
    assert stats["mask_fraction"].tolist() == pytest.approx([30 / 240] * 2)
    assert torch.equal(recon[~mask], x[~mask])
    torch.testing.assert_close(recon[mask], torch.full_like(recon[mask], 3.0), rtol=0, atol=2e-3)
    expected = torch.where(blob, 2.0, torch.where(mask, 2.25 * 0.15, 0.0))
    torch.testing.assert_close(error, expected, rtol=0, atol=2e-3)
    assert torch.equal(error[~mask], torch.zeros_like(error[~mask]))


def test_absolute_residual_variant_known_answer():
    """residual_percentile null (the IterMask3D paper's absolute threshold): c = |x - x_hat| in
    the slices' units, unscaled. The case above: c = 5 on the blob and 0.75 elsewhere, so at
    threshold 1 the same mask; the map |5 - 3| x 5 = 10 on the blob, |0.75 - 3| x 0.75 on the
    rest of the mask, 0 outside it; the caption and result.json say so."""
    auto, sched = methods.get("autoddpm"), make_scheduler(1000)
    x = torch.full((1, 1, 16, 16), 0.75)
    x[:, :, 4:8, 4:8] = 5.0
    blob, brain = x > 1, torch.ones_like(x, dtype=torch.bool)
    mask = torch.zeros_like(blob)
    mask[..., 3:9, 3:9] = True
    s = tiny_settings("autoddpm", noise_t=0, inpaint_t=5, resample_steps=5, mask_threshold_no_lpips=1.0,
                      residual_percentile=None)
    ctx = context(s, timesteps=1000)
    recon, error, stats = auto.anomaly(fill_with_one(sched), sched, x, brain, SliceNoise([0], "cpu"), ctx, None)
    assert stats["mask_fraction"].tolist() == pytest.approx([36 / 256])
    expected = torch.where(blob, 10.0, torch.where(mask, 2.25 * 0.75, 0.0))
    torch.testing.assert_close(error, expected, rtol=0, atol=1e-2)
    assert "residual |x − x̂| (absolute)" in auto.describe(s)
    assert auto.record_extra(ctx, None)["diffusion"]["residual_percentile"] is None


def test_bad_lpips_file_names_the_file(tmp_path):
    bad = tmp_path / "lpips.pt"
    bad.write_text("not a model")
    with pytest.raises(InputError, match="lpips.pt"):
        methods.get("autoddpm").prepare(context(tiny_settings("autoddpm", lpips_model=str(bad))))


def test_train_and_infer_seeded_per_slice(tmp_path):
    s = tiny_settings("autoddpm")
    model, logs = train(tmp_path, s, 2)
    assert any("step 4/4" in line for line in logs)
    out = infer(tmp_path, model, s, 2)
    for cond, kind in (("healthy", "slicewise"), ("lesion", "2d")):
        f, r = out / cond, result(out / cond)
        assert r["method"] == "autoddpm" and r["kind"] == kind and r["mask_map"] == "scaled_residual"
        assert r["lpips_model"] is None and r["diffusion"]["inpaint_t"] == 49 and r["diffusion"]["resample_steps"] == 5
        error, brain = load(f, "error.nii.gz"), load(f, "brainmask.nii.gz") > 0
        assert np.all(error[~brain] == 0) and r["score"] == pytest.approx(float(error[brain].mean()), rel=1e-5)
    # a slice's result does not depend on the batch it runs in (one generator per slice)
    one_by_one = infer(tmp_path / "b1", model, tiny_settings("autoddpm", batch_size=1), 2)
    np.testing.assert_allclose(load(one_by_one / "lesion", "error.nii.gz"), load(out / "lesion", "error.nii.gz"),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("timesteps, noise, inpaint", [
    (1000, "noise to t 200", "RePaint from t 50, 5 resamplings per step"),
    (20, "noise to t 199 (4 of 20 respaced steps)", "RePaint from t 49 (1 of 20 respaced steps), no resampling"),
])
def test_captions_state_the_noise_levels_and_rounds_that_run(timesteps, noise, inpaint):
    """On a respaced schedule a level is the nearest kept step; RePaint from the first one is one
    reverse step, so the caption cannot promise the configured resamplings."""
    import dataclasses

    from itermask.config.settings import freeze, thaw

    s = tiny_settings("autoddpm", noise_t=200, inpaint_t=50, resample_steps=5)
    s = dataclasses.replace(s, network=freeze({**thaw(s.network), "timesteps": timesteps}))
    text = methods.get("autoddpm").describe(s)
    assert noise in text and inpaint in text
    ddpm = methods.get("ddpm").describe(dataclasses.replace(s, method="ddpm"))
    assert noise in ddpm and inpaint.replace("RePaint", "inpainting") in ddpm
