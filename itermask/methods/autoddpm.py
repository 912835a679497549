"""AutoDDPM baseline (Bercea et al., 2023; code ci-ber/autoDDPM; METHOD.md §10): the 2D
diffusion model of the DDPM baseline (``itermask.methods._diffusion``), at test time per slice:

1. mask: noise x to ``infer.noise_t`` (200 of 1000) and denoise to x_hat; residual
   r = |x - x_hat| divided by its per-slice ``infer.residual_percentile`` (95th) percentile
   and clipped to [0, 1] (null: r = |x - x_hat| in the slices' units, unscaled, the IterMask3D
   paper's absolute threshold); combined map c = r x LPIPS(x, x_hat) when an LPIPS network is
   given (``infer.lpips_model``), else c = r; m = dilate3x3(c > threshold) in the brain
   (threshold ``infer.mask_threshold`` with LPIPS, 0.13 in their config;
   ``infer.mask_threshold_no_lpips`` on r alone);
2. stitch: (1 - m) x + m x_hat;
3. re-sample: the stitched image noised to ``infer.inpaint_t`` (50) and a RePaint loop with
   ``infer.resample_steps`` (5) rounds per step, known region from x;
4. map = |x - x_inpainted| x c in the brain (as their code weights it: 0 outside m).

LPIPS needs ImageNet-trained backbone weights that nothing here ships or downloads: with
``infer.lpips_model`` null the mask uses r alone, and result.json records which
(``mask_map``: ``scaled_residual`` or ``scaled_residual_x_lpips``; ``lpips_model``). The
file is a TorchScript module f(a, b) -> (B, 1, H, W) spatial LPIPS distance for 3-channel
inputs in [-1, 1], e.g. ``lpips.LPIPS(net='squeeze', spatial=True)`` (their choice) traced
and saved with ``torch.jit`` where it can be downloaded (docs/baselines.md).
"""
from __future__ import annotations

from typing import Any

from itermask.errors import ConfigError, InputError
from itermask.methods._diffusion_method import DiffusionBaseline
from itermask.methods.ddpm import schedule_text, steps


def scaled_residual(x: Any, x_hat: Any, percentile: float) -> Any:
    """|x - x_hat| / its per-slice percentile, clipped to [0, 1] (B, 1, H, W)."""
    import torch

    r = (x - x_hat).abs()
    q = torch.quantile(r.flatten(1).float(), float(percentile) / 100.0, dim=1).clamp_min(1e-8)
    return (r / q.view(-1, 1, 1, 1)).clamp(0.0, 1.0)


def load_lpips(path: str, device: Any) -> Any:
    import torch

    try:
        return torch.jit.load(str(path), map_location=device).eval()
    except (OSError, RuntimeError, ValueError) as exc:
        raise InputError(f"cannot load the LPIPS TorchScript module (infer.lpips_model): {exc}", path=path) from None


def lpips_map(model: Any, a: Any, b: Any) -> Any:
    """Spatial LPIPS of two (B, 1, H, W) model-scaled images (clipped to [-1, 1], 3 channels)."""
    prep = lambda t: t.clamp(-1.0, 1.0).expand(-1, 3, -1, -1)  # noqa: E731
    out = model(prep(a), prep(b)).float()
    if out.shape != a.shape:
        raise InputError(f"the LPIPS module returned {tuple(out.shape)} for images {tuple(a.shape)}; "
                         "it must give a spatial map (B, 1, H, W) (spatial=True)")
    return out


class AutoDDPM(DiffusionBaseline):
    name = "autoddpm"

    def inference_files(self, settings: Any) -> list[str]:
        path = settings.infer["lpips_model"]
        return [] if path is None else [str(path)]

    def training_files(self, settings: Any) -> list[str]:
        """The LPIPS module when training ends with the threshold calibration (it maps with it)."""
        return self.inference_files(settings) if self.needs_validation(settings) else []

    def prepare(self, ctx: Any) -> Any:
        path = ctx.settings.infer["lpips_model"]
        return None if path is None else load_lpips(path, ctx.device)

    def describe(self, settings: Any) -> str:
        cfg = settings.infer
        pct = ("residual |x − x̂| (absolute)" if cfg["residual_percentile"] is None
               else f"residual / its {float(cfg['residual_percentile']):g}th percentile, clipped to [0, 1]")
        if cfg["lpips_model"] is None:
            mask = (f"{pct}, no LPIPS factor (no LPIPS weights configured), > "
                    f"{self.threshold_text(settings, cfg['mask_threshold_no_lpips'])}")
        else:
            mask = f"{pct}, × LPIPS, > {self.threshold_text(settings, cfg['mask_threshold'])}"
        run = schedule_text(settings)
        return (f"noise to {run['noise']}; mask: {mask}, dilated; RePaint from {run['inpaint']}" + run["resampling"]
                + "; map |x − x_inpainted| × the mask's map (0 outside the mask), as their code weights it")

    def threshold(self, ctx: Any, aux: Any) -> float:
        """The mask's threshold: of the map with LPIPS (``aux``) or without."""
        cfg = ctx.settings.infer
        return self.mask_threshold(ctx, cfg["mask_threshold"] if aux is not None else cfg["mask_threshold_no_lpips"])

    def record_extra(self, ctx: Any, aux: Any) -> dict[str, Any]:
        cfg, s, threshold = ctx.settings.infer, steps(ctx), self.threshold(ctx, aux)
        return {"mask_map": "scaled_residual" if aux is None else "scaled_residual_x_lpips",
                "lpips_model": cfg["lpips_model"],
                "diffusion": {"timesteps": int(ctx.meta["network"]["timesteps"]), "noise_t": s["noise_t_reference"],
                              "inpaint_t": s["inpaint_t_reference"], "resample_steps": int(cfg["resample_steps"]),
                              "mask_threshold": threshold,
                              "mask_threshold_val_percentile": cfg["mask_threshold_val_percentile"],
                              "residual_percentile": cfg["residual_percentile"]}}

    def check(self, settings: Any) -> None:
        super().check(settings)
        cfg = settings.infer
        if cfg["mask_threshold_val_percentile"] is not None and cfg["residual_percentile"] is not None \
                and cfg["lpips_model"] is None:
            raise ConfigError(f"experiment '{settings.name}': method 'autoddpm': infer.mask_threshold_val_percentile "
                              "needs residual_percentile null or an lpips_model: the scaled residual is clipped to 1 "
                              "on every slice's top pixels, so a high percentile of healthy pixels is 1 (no mask)")

    def mask_map(self, net: Any, sched: Any, x: Any, noise: Any, ctx: Any, aux: Any) -> tuple[Any, Any]:
        """x_hat and the combined map c: the residual (scaled by its per-slice percentile, or with
        ``residual_percentile`` null absolute, in the slices' units as DDPM's), times LPIPS when given."""
        xs, pct = x / float(ctx.meta["network"]["data_scale"]), ctx.settings.infer["residual_percentile"]
        x_hat, combined = self.denoised(net, sched, x, noise, ctx)
        if pct is not None:
            combined = scaled_residual(xs, x_hat, float(pct))
        if aux is not None:
            combined = combined * lpips_map(aux, xs, x_hat)
        return x_hat, combined

    def anomaly(self, net: Any, sched: Any, x: Any, brain: Any, noise: Any, ctx: Any, aux: Any) -> tuple:
        from itermask.methods._diffusion import dilate, repaint, stitch

        cfg, s, scale = ctx.settings.infer, steps(ctx), float(ctx.meta["network"]["data_scale"])
        xs = x / scale
        x_hat, combined = self.mask_map(net, sched, x, noise, ctx, aux)
        mask = dilate(combined > self.threshold(ctx, aux)) & brain
        inpainted = repaint(net, sched, xs, stitch(xs, x_hat, mask), mask, s["inpaint_t"], int(cfg["resample_steps"]),
                            noise) * scale
        stats = {"mask_fraction": mask.flatten(1).sum(1) / brain.flatten(1).sum(1).clamp_min(1)}
        return inpainted, (x - inpainted).abs() * combined, stats


METHOD = AutoDDPM()
