"""The DDPM/AutoDDPM initial mask's threshold calibrated on healthy validation slices
(``infer.mask_threshold_val_percentile``, ``DiffusionBaseline.finish_training``): a known
answer with a stand-in network whose reconstruction is 0, its use at inference, the caption,
the refusal of a model without that calibration, and a real tiny training run."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import ndimage

from baselines_e2e import infer, result, train
from diffusion_support import context, predicting_x0, tiny_settings

from itermask import methods
from itermask.errors import ConfigError
from itermask.methods._diffusion import SliceNoise, make_scheduler
from itermask.training.precision import pick_precision


class _Val(SimpleNamespace):
    """Validation samples as `finish_training` reads them: image (n, 1, H, W), brain (n, H, W)."""

    def __len__(self) -> int:
        return len(self.names)


def _val(n: int = 3, size: int = 16) -> _Val:
    g = torch.Generator().manual_seed(4)
    image = 2 * torch.rand(n, 1, size, size, generator=g)
    brain = np.zeros((n, size, size), bool)
    brain[:, 3:13, 2:14] = True
    return _Val(image=image, brain=brain, names=[f"v:{i}" for i in range(n)])


class _ZeroNet(torch.nn.Module):
    """x_hat = 0 exactly from noise_t 0 (its x_0 estimate is 0: the step-0 reverse step returns it)."""

    def __init__(self, sched) -> None:
        super().__init__()
        self.eps = predicting_x0(sched, lambda x, t: torch.zeros_like(x))

    def forward(self, x, t):
        return self.eps(x, t)


def _zero_net(sched):
    return _ZeroNet(sched)


@pytest.mark.parametrize("method, extra", [("ddpm", {}), ("autoddpm", {"residual_percentile": None})])
def test_calibration_known_answer_and_use(method, extra):
    """x_hat = 0, so the map is |x| (slices' units); the threshold is numpy's percentile of |x|
    over the brain pixels of all validation slices, and inference masks above it."""
    m, sched = methods.get(method), make_scheduler(20)
    s = tiny_settings(method, noise_t=0, inpaint_t=0, mask_threshold_val_percentile=90.0, batch_size=2, **extra)
    v = _val()
    meta = m.finish_training(s, {"net": _zero_net(sched)}, v, torch.device("cpu"), pick_precision("cpu", False),
                             lambda msg: None)
    expected = float(np.percentile(v.image[:, 0].numpy()[v.brain], 90))
    cal = meta["mask_threshold_calibration"]
    assert cal == {"percentile": 90.0, "value": pytest.approx(expected, rel=1e-6), "pixels": int(v.brain.sum()),
                   "slices": 3}
    ctx = context(s)
    ctx.meta.update(meta)
    assert m.mask_threshold(ctx, 123.0) == pytest.approx(expected, rel=1e-6)
    assert "the 90th percentile of healthy validation slices" in m.describe(s)
    x, brain = v.image, torch.from_numpy(v.brain)[:, None]
    _, _, stats = m.anomaly(_zero_net(sched), sched, x, brain, SliceNoise([0, 1, 2], "cpu"), ctx, None)
    key = "initial_mask_fraction" if method == "ddpm" else "mask_fraction"
    above = x.abs() > cal["value"]
    if method == "autoddpm":  # AutoDDPM dilates its mask by a 3x3 square (from pixels outside the brain too)
        above = torch.from_numpy(ndimage.binary_dilation(above.numpy(), structure=np.ones((1, 1, 3, 3), bool)))
    above &= brain
    torch.testing.assert_close(stats[key], above.flatten(1).sum(1) / brain.flatten(1).sum(1))
    assert m.record_extra(ctx, None)["diffusion"]["mask_threshold"] == pytest.approx(expected, rel=1e-6)


def test_without_the_setting_the_configured_threshold_applies():
    m = methods.get("ddpm")
    s = tiny_settings("ddpm")
    assert s.infer["mask_threshold_val_percentile"] is None and m.finish_training(s, {}, None, None, None, print) == {}
    assert m.mask_threshold(context(s), 1.5) == 1.5 and "> 1 (configured, not set on validation data), " in m.describe(s)


def test_a_model_without_the_calibration_is_refused():
    m = methods.get("ddpm")
    s = tiny_settings("ddpm", mask_threshold_val_percentile=99.0)
    with pytest.raises(ConfigError, match="holds no calibration: retrain"):
        m.mask_threshold(context(s), 1.0)


def test_autoddpm_refuses_a_percentile_of_the_clipped_scaled_residual():
    s = tiny_settings("autoddpm", mask_threshold_val_percentile=99.0)
    with pytest.raises(ConfigError, match="needs residual_percentile null or an lpips_model"):
        methods.get("autoddpm").check(s)


def test_train_calibrates_and_infer_uses_it(tmp_path):
    s = tiny_settings("ddpm", mask_threshold_val_percentile=95.0)
    model, logs = train(tmp_path, s, 2)
    assert any("95th percentile of" in line for line in logs)
    meta = torch.load(model, weights_only=True)["meta"]
    value = meta["mask_threshold_calibration"]["value"]
    assert meta["mask_threshold_calibration"]["percentile"] == 95.0 and value > 0
    r = result(infer(tmp_path, model, s, 2) / "lesion")
    assert r["diffusion"]["mask_threshold"] == pytest.approx(value)
    assert r["diffusion"]["mask_threshold_val_percentile"] == 95.0


def test_training_without_validation_slices_refuses_to_start(tmp_path):
    """The calibration needs healthy validation slices: training stops before its first step."""
    from itermask.errors import InputError
    from itermask.training.loop import load_data

    s = tiny_settings("ddpm", mask_threshold_val_percentile=99.0)
    assert methods.get("ddpm").needs_validation(s) and not methods.get("ddpm").needs_validation(tiny_settings("ddpm"))
    model, _ = train(tmp_path, tiny_settings("ddpm"), 2)  # writes the subjects
    import json

    items = json.loads((tmp_path / "data" / "train_items_2d.json").read_text())
    with pytest.raises(InputError, match="ddpm needs validation samples"):
        load_data(methods.get("ddpm"), s, items[:2], [])
