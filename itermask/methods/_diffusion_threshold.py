"""The initial mask's threshold of the diffusion baselines (DDPM, AutoDDPM; METHOD.md §10:
"threshold is config; IterMask3D tuned it"), optionally set on healthy validation slices.

With ``infer.mask_threshold_val_percentile`` p, training ends by running the method's
`mask_map` (noise to ``noise_t``, denoise, the map the initial mask thresholds) on the
healthy validation slices, one noise draw per slice keyed by (seed, method, "calibration",
slice), and stores the p-th percentile of the map over their brain pixels in the model file
(``mask_threshold_calibration``); inference then thresholds at that value. Without it, the
configured threshold applies.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, Mapping

import numpy as np

from itermask.errors import ConfigError


def calibrate(method: Any, settings: Any, networks: Mapping[str, Any], val: Any, device: Any, precision: Any,
              log: Callable[[str], Any]) -> dict[str, Any]:
    """``{"mask_threshold_calibration": {percentile, value, pixels, slices}}``, or {} when the
    setting is off; ``val``: the healthy validation samples (image (n, 1, H, W), brain (n, H, W))."""
    import torch

    from itermask.io.seeds import keyed_seed
    from itermask.methods._diffusion import SliceNoise, make_scheduler

    pct = settings.infer["mask_threshold_val_percentile"]
    if pct is None:
        return {}
    net = networks["net"]
    ctx = SimpleNamespace(settings=settings, device=device, amp=precision.amp,
                          meta={"network": dict(settings.network)})
    sched, aux = make_scheduler(int(settings.network["timesteps"])), method.prepare(ctx)
    values, bs, was_training = [], int(settings.infer["batch_size"]), net.training
    net.eval()
    try:
        with torch.inference_mode(), precision.forward_context(device.type):  # inference's precision
            for s in range(0, len(val), bs):
                x = val.image[s:s + bs].to(device)
                seeds = [keyed_seed(settings.seed, method.name, "calibration", i) for i in range(s, s + len(x))]
                _, m = method.mask_map(net, sched, x, SliceNoise(seeds, device), ctx, aux)
                values.append(m[:, 0].float().cpu().numpy()[val.brain[s:s + bs]])
    finally:
        net.train(was_training)
    pixels = np.concatenate(values)
    value = float(np.percentile(pixels, float(pct)))
    log(f"[{method.name}] initial-mask threshold: {pct:g}th percentile of {pixels.size} healthy validation "
        f"brain pixels = {value:.4g}")
    return {"mask_threshold_calibration": {"percentile": float(pct), "value": value, "pixels": int(pixels.size),
                                           "slices": len(val)}}


def mask_threshold(ctx: Any, configured: float) -> float:
    """The model's calibrated threshold when ``infer.mask_threshold_val_percentile`` is set (a
    ConfigError when the model file holds none at that percentile), else ``configured``."""
    pct = ctx.settings.infer["mask_threshold_val_percentile"]
    if pct is None:
        return float(configured)
    cal = ctx.meta.get("mask_threshold_calibration")
    if cal is None or float(cal["percentile"]) != float(pct):
        raise ConfigError(f"experiment '{ctx.settings.name}': infer.mask_threshold_val_percentile {pct:g}, but the "
                          f"model file holds {'no calibration' if cal is None else cal['percentile']}: retrain")
    return float(cal["value"])


def threshold_text(settings: Any, configured: float) -> str:
    """Caption text of the initial mask's threshold."""
    pct = settings.infer["mask_threshold_val_percentile"]
    if pct is None:
        return f"{float(configured):g} (configured, not set on validation data)"
    return f"the {float(pct):g}th percentile of healthy validation slices"
