"""What the DDPM and AutoDDPM baselines share as methods (METHOD.md §10): one 2D diffusion
model ``net`` (MONAI's ``DiffusionModelUNet``, epsilon prediction) trained on healthy 2D
slices, read like IterMask2's (the slices files for training, ``val`` and ``lesion``;
slice-wise on volumes for the detection conditions, ``itermask.inference.slicewise``).

The model works on the slices divided by ``network.data_scale`` (3: the slices' background
-3 and 90th brain percentile +3 become -1 and +1, the range DDPMs are trained on; lesions
brighter than that stay above 1, hence no clipping). Outputs (``recon``, ``error``) are in
the slices' units. A subclass implements `anomaly` (its test-time procedure on a batch) and
may override `prepare` (state loaded once per inference job, e.g. an LPIPS network) and
`record_extra` (its result.json entries). No binary mask is written: the score is the
mean anomaly map (``mean_error``) and segmentation thresholds the map.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from itermask.config.settings import thaw
from itermask.errors import ConfigError, InputError
from itermask.methods.base import ConditionOutput, InferenceContext, InputSpec, Method, reads_slices

NETWORK_KEYS = ("attention_levels", "num_res_blocks", "num_head_channels", "norm_num_groups", "timesteps",
                "data_scale")


class DiffusionBaseline(Method):
    """A 2D diffusion model on slices; subclasses give the test-time procedure. They train the
    same network in the same way, so one may use another's model (``model_family``)."""

    spatial_dims = 2
    primary_network = "net"
    model_family = "diffusion"

    # -- inputs and checks ----------------------------------------------------------------
    def train_inputs(self, settings: Any) -> InputSpec:
        return InputSpec("slices")

    def condition_inputs(self, settings: Any, condition: str) -> InputSpec:
        return InputSpec("slices") if reads_slices(settings, condition) else InputSpec("volume")  # volume: slice-wise, 3D metrics

    def check(self, settings: Any) -> None:
        from itermask.methods._diffusion import REFERENCE_TIMESTEPS

        def fail(msg: str) -> None:
            raise ConfigError(f"experiment '{settings.name}': method '{self.name}': {msg}")

        n, t = settings.network, settings.train
        if settings.variant != "full":
            fail(f"no variant '{settings.variant}' (only 'full')")
        if settings.infer["score"] != "mean_error":
            fail(f"no binary mask; infer.score must be 'mean_error', got '{settings.infer['score']}'")
        if t.rot90_p > 0 and max(t.rot90_axes) > 1:
            fail(f"2D slices have axes 0 and 1; set train.rot90_axes [0, 1] or train.rot90_p 0 "
                 f"(got {list(t.rot90_axes)})")
        if REFERENCE_TIMESTEPS % int(n["timesteps"]):
            fail(f"network.timesteps must divide {REFERENCE_TIMESTEPS}, got {n['timesteps']}")
        if len(n["attention_levels"]) != len(n["diffusion_channels"]):
            fail(f"network.attention_levels ({len(n['attention_levels'])}) needs one entry per "
                 f"network.diffusion_channels level ({len(n['diffusion_channels'])})")
        if any(c % int(n["norm_num_groups"]) for c in n["diffusion_channels"]):
            fail(f"network.diffusion_channels {list(n['diffusion_channels'])} must be multiples of "
                 f"network.norm_num_groups {n['norm_num_groups']}")

    # -- training -------------------------------------------------------------------------
    def needs_validation(self, settings: Any) -> bool:
        """The initial mask's threshold calibrated on healthy validation slices needs them."""
        return settings.infer["mask_threshold_val_percentile"] is not None

    def build_networks(self, settings: Any, image_shape: tuple[int, ...]) -> dict[str, Any]:
        if len(image_shape) != 2 or image_shape[0] != image_shape[1]:
            raise InputError(f"{self.name} trains on square 2D slices, got {image_shape}", dataset=settings.dataset)
        network = {"channels": thaw(settings.network["diffusion_channels"]),
                   **{k: thaw(settings.network[k]) for k in NETWORK_KEYS}, "image_size": int(image_shape[0])}
        return {"network": network, "in_channels": {"net": 1}, "spatial_dims": 2}

    def networks_from_meta(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        from monai.networks.nets import DiffusionModelUNet

        n = meta["network"]
        net = DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=tuple(n["channels"]),
                                 attention_levels=tuple(bool(a) for a in n["attention_levels"]),
                                 num_res_blocks=int(n["num_res_blocks"]), num_head_channels=int(n["num_head_channels"]),
                                 norm_num_groups=int(n["norm_num_groups"]))
        return {"net": net}

    def losses(self, settings: Any, networks: Mapping[str, Any], batch: Mapping[str, Any], generator: Any) -> dict:
        """Epsilon-prediction MSE at timesteps and noise drawn from the step's generator."""
        import torch

        x = batch["image"] / float(settings.network["data_scale"])
        t = torch.randint(0, int(settings.network["timesteps"]), (x.shape[0],), generator=generator, device=x.device)
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        return {"net": self._eps_loss(settings, networks["net"], x, t, noise)}

    @staticmethod
    def _eps_loss(settings: Any, net: Any, x: Any, t: Any, noise: Any) -> Any:
        from monai.inferers import DiffusionInferer

        from itermask.methods._diffusion import make_scheduler

        inferer = DiffusionInferer(make_scheduler(int(settings.network["timesteps"])))
        pred = inferer(inputs=x, diffusion_model=net, noise=noise, timesteps=t)
        return ((pred.float() - noise) ** 2).mean()

    def validation_losses(self, settings: Any, networks: Mapping[str, Any], val: Any, device: Any,
                          precision: Any) -> dict[str, float]:
        """``val_loss``: the training loss on the validation slices at one fixed draw of
        timesteps and noise (a CPU generator keyed by the seed: the same on CPU and CUDA)."""
        import torch

        from itermask.io.seeds import keyed_seed

        net, batch_size = networks["net"], int(settings.infer["batch_size"])
        g = torch.Generator().manual_seed(keyed_seed(settings.seed, self.name, "val"))
        t = torch.randint(0, int(settings.network["timesteps"]), (len(val),), generator=g)
        noise = torch.randn(tuple(val.image.shape), generator=g)
        was_training, total = net.training, 0.0
        net.eval()
        try:
            with torch.no_grad():
                for s in range(0, len(val), batch_size):
                    sl = slice(s, s + batch_size)
                    x = val.image[sl].to(device) / float(settings.network["data_scale"])
                    with precision.context(device.type):
                        loss = self._eps_loss(settings, net, x, t[sl].to(device), noise[sl].to(device))
                    total += float(loss) * len(x)
        finally:
            net.train(was_training)
        return {"val_loss": total / len(val)}

    # -- the initial mask's threshold, optionally calibrated on healthy validation slices ---
    @staticmethod
    def denoised(net: Any, sched: Any, x: Any, noise: Any, ctx: Any) -> tuple[Any, Any]:
        """x noised to ``infer.noise_t`` and denoised: (x_hat in model units, |x - x_hat| in the
        slices' units) of a batch x (B, 1, H, W) in the slices' units."""
        from itermask.methods._diffusion import denoise_from
        from itermask.methods.ddpm import steps

        scale = float(ctx.meta["network"]["data_scale"])
        x_hat = denoise_from(net, sched, x / scale, steps(ctx)["noise_t"], noise)
        return x_hat, (x - x_hat * scale).abs()

    def mask_map(self, net: Any, sched: Any, x: Any, noise: Any, ctx: Any, aux: Any) -> tuple[Any, Any]:
        """(x_hat in model units, the map the initial mask thresholds) of a batch x (B, 1, H, W)
        in the slices' units."""
        raise NotImplementedError

    def finish_training(self, settings: Any, networks: Mapping[str, Any], val: Any, device: Any, precision: Any,
                        log: Any) -> dict[str, Any]:
        """The initial mask's threshold set on the healthy validation slices when configured
        (``_diffusion_threshold.calibrate``)."""
        from itermask.methods._diffusion_threshold import calibrate

        return calibrate(self, settings, networks, val, device, precision, log)

    def mask_threshold(self, ctx: Any, configured: float) -> float:
        """The initial mask's threshold: the calibrated one, or ``configured``."""
        from itermask.methods._diffusion_threshold import mask_threshold

        return mask_threshold(ctx, configured)

    @staticmethod
    def threshold_text(settings: Any, configured: float) -> str:
        """Caption text of the initial mask's threshold."""
        from itermask.methods._diffusion_threshold import threshold_text

        return threshold_text(settings, configured)

    # -- inference ------------------------------------------------------------------------
    def prepare(self, ctx: InferenceContext) -> Any:
        """State loaded once per inference job (none by default)."""
        return None

    def record_extra(self, ctx: InferenceContext, aux: Any) -> dict[str, Any]:
        """The method's own result.json entries."""
        return {}

    def anomaly(self, net: Any, sched: Any, x: Any, brain: Any, noise: Any, ctx: InferenceContext,
                aux: Any) -> tuple[Any, Any, dict[str, Any]]:
        """(recon, anomaly map, per-slice statistics (B,)) of a batch x (B, 1, H, W) in the slices'
        units; brain (B, 1, H, W) bool."""
        raise NotImplementedError

    def infer(self, networks: Mapping[str, Any], inputs: Mapping[str, Any], ctx: InferenceContext) -> dict:
        from itermask.io.samples import Slices

        net = networks["net"].eval()
        aux, out = self.prepare(ctx), {}
        for name, v in inputs.items():
            out[name] = (self._slices_output(net, name, v, ctx, aux) if isinstance(v, Slices)
                         else self._slicewise_output(net, name, v, ctx, aux))
            r = out[name].record
            ctx.log(f"[infer] {name}: {r['kind']}, " + (f"left out ({r['left_out_reason']})" if "left_out_reason" in r
                                                       else f"mean error {r['score']:.4g}"))
        return out

    def run_slices(self, net: Any, images: np.ndarray, brains: np.ndarray, seeds: list[int], ctx: InferenceContext,
                   aux: Any) -> tuple[np.ndarray, np.ndarray, dict[str, list[float]]]:
        """The method on (n, H, W) slices in batches of ``infer.batch_size``, one noise
        generator per slice; returns recon, map (0 outside the brain) and per-slice statistics."""
        import torch

        from itermask.io.device import autocast
        from itermask.methods._diffusion import SliceNoise, make_scheduler

        sched = make_scheduler(int(ctx.meta["network"]["timesteps"]))
        recon, error = np.empty(images.shape, np.float32), np.empty(images.shape, np.float32)
        stats: dict[str, list[float]] = {}
        bs = int(ctx.settings.infer["batch_size"])
        with torch.inference_mode(), autocast(ctx.device.type, ctx.amp):
            for s in range(0, len(images), bs):
                x = torch.from_numpy(np.ascontiguousarray(images[s:s + bs], np.float32))[:, None].to(ctx.device)
                b = torch.from_numpy(np.ascontiguousarray(brains[s:s + bs], bool))[:, None].to(ctx.device)
                r, e, st = self.anomaly(net, sched, x, b, SliceNoise(seeds[s:s + bs], ctx.device), ctx, aux)
                recon[s:s + len(x)] = r[:, 0].float().cpu().numpy()
                error[s:s + len(x)] = torch.where(b, e, 0.0)[:, 0].float().cpu().numpy()
                for k, val in st.items():
                    stats.setdefault(k, []).extend(float(q) for q in val.cpu())
        return recon, error, stats

    def _record(self, ctx: InferenceContext, aux: Any, stats: dict[str, list[float]]) -> dict[str, Any]:
        means = {f"mean_{k}": float(np.mean(v)) if v else None for k, v in stats.items()}
        return {**self.record_extra(ctx, aux), **means}

    def _slices_output(self, net: Any, name: str, s: Any, ctx: InferenceContext, aux: Any) -> ConditionOutput:
        from itermask.inference.outputs import detection_scores

        score = ctx.settings.infer["score"]
        if len(s.image) == 0:
            return ConditionOutput({}, s.affine, {"kind": "2d", "inputs": s.paths, "slices": [], "role": s.role,
                                                  "left_out_reason": s.left_out_reason or "no slice"})
        size = int(ctx.meta["network"]["image_size"])
        if s.image.shape[1:] != (size, size):
            raise InputError(f"slices are {s.image.shape[1:]}, the model expects {size}x{size}", path=s.paths["slices"])
        seeds = [ctx.seed(name, "slice", int(i)) for i in s.index]
        recon, error, stats = self.run_slices(net, s.image, s.brain, seeds, ctx, aux)
        per_slice = [detection_scores(error[i], None, s.brain[i], score)["scores"] for i in range(len(error))]
        record = {"kind": "2d", "inputs": s.paths, "slices": s.index.tolist(), "role": s.role,
                  "per_slice_scores": per_slice, "per_slice": stats, **self._record(ctx, aux, stats),
                  **detection_scores(error, None, s.brain, score)}
        hwn = lambda a: None if a is None else np.moveaxis(a, 0, -1)  # noqa: E731
        arrays = {"recon": hwn(recon), "error": hwn(error), "brainmask": hwn(s.brain), "label": hwn(s.label)}
        return ConditionOutput(arrays, s.affine, record)

    def _slicewise_output(self, net: Any, name: str, v: Any, ctx: InferenceContext, aux: Any) -> ConditionOutput:
        """A volume through the 2D model slice by slice; results back on the volume grid."""
        from types import SimpleNamespace

        import torch

        from itermask.inference.outputs import detection_scores
        from itermask.inference.slicewise import slices_to_volume, volume_to_slices

        if ctx.field_of_view_mm is None:
            raise InputError("no 2D field of view (preprocess.slices2d.field_of_view_mm) to run on a volume",
                             path=v.paths["image"])
        sl = volume_to_slices(v, int(ctx.meta["network"]["image_size"]), int(ctx.meta["hf_radius"]),
                              float(ctx.field_of_view_mm))
        seeds = [ctx.seed(name, "slice", int(z)) for z in sl["z"]]
        recon, error, stats = self.run_slices(net, sl["image"], sl["brain"], seeds, ctx, aux)
        res = [SimpleNamespace(recon=torch.from_numpy(r), error=torch.from_numpy(e), mask=torch.zeros(e.shape, dtype=bool))
               for r, e in zip(recon, error)]
        vol = slices_to_volume(v, sl, res)
        record = {"kind": "slicewise", "inputs": v.paths, "slices": sl["z"].tolist(), "units": "scaled_2d",
                  "field_of_view_mm": float(ctx.field_of_view_mm), **self._record(ctx, aux, stats),
                  **detection_scores(vol["error"], None, v.brain, ctx.settings.infer["score"])}
        arrays = {"recon": vol["recon"], "error": vol["error"], "input2d": sl["scaled"], "brainmask": v.brain,
                  "label": v.label}
        return ConditionOutput(arrays, v.affine, record)
