"""DDPM baseline, image space (Pinaya et al., MICCAI 2022a, as the IterMask papers ran it;
METHOD.md §10; row "DDPM (image space)"): a 2D diffusion model (epsilon prediction, the
1000-step linear schedule; ``itermask.methods._diffusion``) trained on healthy slices. Test,
per slice x: noise to ``infer.noise_t`` (reference steps) and denoise to x_hat; initial mask
m = |x - x_hat| > ``infer.mask_threshold`` (slices' units; the IterMask3D paper tuned it) in
the brain, or with ``infer.mask_threshold_val_percentile`` p the p-th percentile of
|x - x_hat| over healthy validation brain pixels, set when training ends
(``_diffusion_threshold``); inpaint inside m: RePaint from the stitched image
(1 - m) x + m x_hat noised to ``infer.inpaint_t``, ``infer.resample_steps`` rounds per step, known region from x; anomaly
map (x - x_inpainted)^2 in the brain (0 outside m, where the inpainted image is x).

Pinaya et al. run the diffusion model in the latent space of a VQ-VAE; this one works on the
image (docs/baselines.md). Settings (schema ``method_defaults.ddpm``): network
``diffusion_channels``, ``attention_levels``, ``num_res_blocks``, ``num_head_channels``,
``norm_num_groups``, ``timesteps``, ``data_scale``; infer ``noise_t``, ``mask_threshold``,
``inpaint_t``, ``resample_steps``, ``batch_size``, ``score`` (``mean_error``).
"""
from __future__ import annotations

from typing import Any

from itermask.methods._diffusion_method import DiffusionBaseline


def steps(ctx: Any) -> dict[str, int]:
    """Model steps of the configured reference noise levels (and the reference steps they are)."""
    from itermask.methods._diffusion import model_step, reference_step

    T = int(ctx.meta["network"]["timesteps"])
    out = {}
    for key in ("noise_t", "inpaint_t"):
        j = model_step(int(ctx.settings.infer[key]), T)
        out[key], out[f"{key}_reference"] = j, reference_step(j, T)
    return out


def schedule_text(settings: Any) -> dict[str, str]:
    """Caption text of the noise levels (``noise``, ``inpaint``) and RePaint's rounds (``resampling``)
    as they run: on a respaced schedule each level is the nearest kept step, and RePaint from the
    first kept step is one reverse step, with no resampling."""
    from itermask.methods._diffusion import REFERENCE_TIMESTEPS, model_step, reference_step

    T, cfg = int(settings.network["timesteps"]), settings.infer
    out, j = {}, {}
    for key in ("noise", "inpaint"):
        t = int(cfg[f"{key}_t"])
        j[key] = model_step(t, T)
        kept = reference_step(j[key], T)
        out[key] = f"t {t}" if T == REFERENCE_TIMESTEPS else f"t {kept} ({j[key] + 1} of {T} respaced steps)"
    n = int(cfg["resample_steps"]) if j["inpaint"] > 0 else 1
    out["resampling"] = ", no resampling" if n == 1 else f", {n} resamplings per step"
    return out


class DDPM(DiffusionBaseline):
    name = "ddpm"

    def describe(self, settings: Any) -> str:
        cfg, run = settings.infer, schedule_text(settings)
        return (f"noise to {run['noise']}, initial mask |x − x̂| > "
                f"{self.threshold_text(settings, cfg['mask_threshold'])}, "
                f"inpainting from {run['inpaint']}" + run["resampling"])

    def record_extra(self, ctx: Any, aux: Any) -> dict[str, Any]:
        cfg, s = ctx.settings.infer, steps(ctx)
        return {"diffusion": {"timesteps": int(ctx.meta["network"]["timesteps"]), "noise_t": s["noise_t_reference"],
                              "inpaint_t": s["inpaint_t_reference"], "resample_steps": int(cfg["resample_steps"]),
                              "mask_threshold": self.mask_threshold(ctx, cfg["mask_threshold"]),
                              "mask_threshold_val_percentile": cfg["mask_threshold_val_percentile"]}}

    def mask_map(self, net: Any, sched: Any, x: Any, noise: Any, ctx: Any, aux: Any) -> tuple[Any, Any]:
        """x_hat and |x - x_hat| in the slices' units."""
        return self.denoised(net, sched, x, noise, ctx)

    def anomaly(self, net: Any, sched: Any, x: Any, brain: Any, noise: Any, ctx: Any, aux: Any) -> tuple:
        from itermask.methods._diffusion import repaint, stitch

        cfg, s, scale = ctx.settings.infer, steps(ctx), float(ctx.meta["network"]["data_scale"])
        xs = x / scale
        x_hat, residual = self.mask_map(net, sched, x, noise, ctx, aux)
        mask = (residual > self.mask_threshold(ctx, cfg["mask_threshold"])) & brain
        inpainted = repaint(net, sched, xs, stitch(xs, x_hat, mask), mask, s["inpaint_t"], int(cfg["resample_steps"]),
                            noise) * scale
        stats = {"initial_mask_fraction": mask.flatten(1).sum(1) / brain.flatten(1).sum(1).clamp_min(1)}
        return inpainted, (x - inpainted) ** 2, stats


METHOD = DDPM()
