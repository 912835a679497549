"""What the reconstruction baselines (AE, DAE, Cyclic UNet; METHOD.md §10) share.

One network ``net`` reconstructs the image; the anomaly map is E = (x - x_hat)^2 inside the
brain and the detection score its mean over the brain (``score: mean_error``). There is no
binary mask: segmentation comes from thresholding E (the evaluation protocols).

2D or 3D from config: ``network.spatial_dims`` 3 uses IterMask3D's residual UNet
(``ResUNet3D``: ``channels``, ``dropout``, ``residual``) on volumes; 2 uses IterMask2's
attention UNet (``AttnResUNet2D``: ``channels``, ``attention_res``, ``dropout``,
``num_res_blocks``, ``num_heads``, ``middle_attention``) on the 2D slices files, and on
volumes (detection) slice-wise (``itermask.inference.slicewise``), as IterMask2 does. The
model file's meta ``spatial_dims`` is the experiment's (``build_networks`` stores it over the
class attribute; inference reads it there and refuses a meta without it). A subclass sets
``skip_connections`` (False: the AE) and ``losses``; a corrupting method also ``corrupt`` and
``validation_corrupt``; a method of several networks (the Cyclic UNet's F and B, each a
``backbone``) its ``networks_from_meta`` and ``reconstructor``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from itermask.config.settings import thaw
from itermask.errors import ConfigError, InputError
from itermask.methods.base import ConditionOutput, InferenceContext, InputSpec, Method, reads_slices

NETWORK_KEYS = {3: ("channels", "dropout", "residual"),
                2: ("channels", "attention_res", "dropout", "num_res_blocks", "num_heads", "middle_attention")}
SPATIAL_DIVISOR = 16  # four stride-2 levels of either UNet


def spatial_dims(settings: Any) -> int:
    return int(settings.network["spatial_dims"])


class ReconstructionBaseline(Method):
    """A UNet that reconstructs the (possibly corrupted) image; E = (x - x_hat)^2 in the brain."""

    spatial_dims = 3  # overridden per experiment: network.spatial_dims (stored in the model meta)
    primary_network = "net"
    skip_connections: bool = True
    network_extra: tuple[str, ...] = ()  # further network keys stored in the meta (e.g. the DAE noise)

    # -- inputs -------------------------------------------------------------------------
    def train_inputs(self, settings: Any) -> InputSpec:
        return InputSpec("slices") if spatial_dims(settings) == 2 else InputSpec("volume")

    def condition_inputs(self, settings: Any, condition: str) -> InputSpec:
        if spatial_dims(settings) == 2 and reads_slices(settings, condition):
            return InputSpec("slices")
        return InputSpec("volume")  # 2D: slice-wise on the volume

    def check(self, settings: Any) -> None:
        if settings.variant != "full":
            raise ConfigError(f"experiment '{settings.name}': method '{self.name}' has no variant "
                              f"'{settings.variant}' (only 'full')")
        if settings.infer["score"] != "mean_error":
            raise ConfigError(f"experiment '{settings.name}': method '{self.name}' has no binary mask; "
                              f"infer.score must be 'mean_error', got '{settings.infer['score']}'")
        t = settings.train
        if spatial_dims(settings) == 2 and t.rot90_p > 0 and max(t.rot90_axes) > 1:
            raise ConfigError(f"experiment '{settings.name}': 2D slices have axes 0 and 1; set train.rot90_axes "
                              f"[0, 1] or train.rot90_p 0 (got axes {list(t.rot90_axes)})")

    # -- training -----------------------------------------------------------------------
    def build_networks(self, settings: Any, image_shape: tuple[int, ...]) -> dict[str, Any]:
        dims = spatial_dims(settings)
        if len(image_shape) != dims:
            raise InputError(f"network.spatial_dims {dims} but the training images are {image_shape}",
                             dataset=settings.dataset)
        network = {k: thaw(settings.network[k]) for k in (*NETWORK_KEYS[dims], *self.network_extra)}
        network.update(spatial_dims=dims, skip_connections=self.skip_connections)
        if dims == 2:
            if image_shape[0] != image_shape[1]:
                raise InputError(f"2D slices must be square, got {image_shape}", dataset=settings.dataset)
            network["image_size"] = int(image_shape[0])
        return {"network": network, "in_channels": {"net": 1}, "spatial_dims": dims}

    def networks_from_meta(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        return {"net": backbone(meta["network"])}

    def reconstructor(self, networks: Mapping[str, Any]) -> Any:
        """The callable x -> x_hat of inference (the one network; the Cyclic UNet: B(F(x)))."""
        return networks["net"]

    def validation_corrupt(self, settings: Any, brains: np.ndarray, sample_ids: np.ndarray) -> dict[str, Any]:
        """The fixed corruption of validation samples (none by default)."""
        return {}

    def validation_losses(self, settings: Any, networks: Mapping[str, Any], val: Any, device: Any,
                          precision: Any) -> dict[str, float]:
        """``val_loss``: the training loss on the validation samples (eval mode, fixed corruption),
        averaged over samples."""
        import torch

        model, batch_size = networks["net"], int(settings.infer["batch_size"])
        was_training, total = model.training, 0.0
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(val), batch_size):
                    idx = np.arange(start, min(start + batch_size, len(val)))
                    batch = {"image": val.image[idx], **self.validation_corrupt(settings, val.brain[idx], idx)}
                    batch = {k: t.to(device) for k, t in batch.items()}
                    with precision.context(device.type):
                        loss = self.losses(settings, networks, batch, None)["net"]
                    total += float(loss) * len(idx)
        finally:
            model.train(was_training)
        return {"val_loss": total / len(val)}

    # -- inference ----------------------------------------------------------------------
    def infer(self, networks: Mapping[str, Any], inputs: Mapping[str, Any], ctx: InferenceContext) -> dict:
        from itermask.io.samples import Slices

        net, cfg = self.reconstructor(networks), ctx.settings.infer
        batch_size, score = int(cfg["batch_size"]), cfg["score"]
        dims = model_spatial_dims(ctx.meta, ctx.model_path)
        out = {}
        for name, v in inputs.items():
            if isinstance(v, Slices):
                out[name] = _slices_output(net, v, batch_size, score, ctx)
            elif dims == 2:
                out[name] = _slicewise_output(net, v, batch_size, score, ctx)
            else:
                out[name] = _volume_output(net, v, score, ctx)
            r = out[name].record
            ctx.log(f"[infer] {name}: {r['kind']}, " + (f"left out ({r['left_out_reason']})" if "left_out_reason" in r
                                                       else f"mean error {r['score']:.4g}"))
        return out


def model_spatial_dims(meta: Mapping[str, Any], model_path: str) -> int:
    """The model's ``spatial_dims`` (its experiment's ``network.spatial_dims``, stored in the meta
    when training ends); InputError naming the model file when the meta lacks it."""
    if "spatial_dims" not in meta:
        raise InputError("model meta has no 'spatial_dims' (2 or 3): retrain the model", path=model_path)
    return int(meta["spatial_dims"])


def backbone(n: Mapping[str, Any]) -> Any:
    """A fresh 1-in, 1-out UNet from a meta's ``network``: the 3D residual UNet or the 2D
    attention UNet (``spatial_dims``), with or without skip connections."""
    from itermask.core.networks import AttnResUNet2D, ResUNet3D

    if int(n["spatial_dims"]) == 3:  # the baselines have no input_skip setting: the reference's UNet
        return ResUNet3D(1, 1, channels=n["channels"], dropout=float(n["dropout"]), residual=n["residual"],
                         input_skip=False, skip_connections=bool(n["skip_connections"]))
    return AttnResUNet2D(1, 1, channels=n["channels"], attention_res=n["attention_res"],
                         image_size=int(n["image_size"]), dropout=float(n["dropout"]),
                         num_res_blocks=int(n["num_res_blocks"]), num_heads=int(n["num_heads"]),
                         middle_attention=bool(n["middle_attention"]), skip_connections=bool(n["skip_connections"]))


def reconstruct(net: Any, images: np.ndarray, batch_size: int, device: Any, amp: bool) -> np.ndarray:
    """The network's reconstruction of ``images`` (n, *spatial), in batches (under ``autocast``
    when ``amp``), as float32."""
    import torch

    from itermask.io.device import autocast

    out = np.empty(images.shape, np.float32)
    with torch.inference_mode(), autocast(torch.device(device).type, amp):
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size], np.float32))[:, None]
            out[start:start + len(x)] = net(x.to(device))[:, 0].float().cpu().numpy()
    return out


def squared_error(image: np.ndarray, recon: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The anomaly map: (x - x_hat)^2 inside the brain, 0 outside."""
    return np.where(brain, (image - recon) ** 2, 0.0).astype(np.float32)


def _volume_output(net: Any, v: Any, score: str, ctx: InferenceContext) -> ConditionOutput:
    from itermask.inference.outputs import detection_scores

    if any(n % SPATIAL_DIVISOR for n in v.image.shape):
        raise InputError(f"volume shape {v.image.shape} is not divisible by {SPATIAL_DIVISOR} (set preprocess.box)",
                         path=v.paths["image"])
    recon = reconstruct(net, v.image[None], 1, ctx.device, ctx.amp)[0]
    error = squared_error(v.image, recon, v.brain)
    record = {"kind": "3d", "inputs": v.paths, **detection_scores(error, None, v.brain, score)}
    return ConditionOutput({"recon": recon, "error": error, "brainmask": v.brain, "label": v.label}, v.affine, record)


def _model_size(ctx: InferenceContext) -> int:
    size = (ctx.meta.get("network") or {}).get("image_size")
    if size is None:
        raise InputError("2D model meta has no image size (network.image_size)", path=ctx.model_path)
    return int(size)


def _slices_output(net: Any, s: Any, batch_size: int, score: str, ctx: InferenceContext) -> ConditionOutput:
    """A slices file: an (H, W, n) stack (the file's affine, axial indices in ``slices``); a
    left-out test subject (no slice) has a record and no arrays."""
    from itermask.inference.outputs import detection_scores

    if len(s.image) == 0:
        record = {"kind": "2d", "inputs": s.paths, "slices": [], "role": s.role,
                  "left_out_reason": s.left_out_reason or "no slice"}
        return ConditionOutput({}, s.affine, record)
    size = _model_size(ctx)
    if s.image.shape[1:] != (size, size):
        raise InputError(f"slices are {s.image.shape[1:]}, the model expects {size}x{size}", path=s.paths["slices"])
    recon = reconstruct(net, s.image, batch_size, ctx.device, ctx.amp)
    error = squared_error(s.image, recon, s.brain)
    per_slice = [detection_scores(error[i], None, s.brain[i], score)["scores"] for i in range(len(error))]
    record = {"kind": "2d", "inputs": s.paths, "slices": s.index.tolist(), "role": s.role,
              "per_slice_scores": per_slice, **detection_scores(error, None, s.brain, score)}

    def hwn(a: np.ndarray) -> np.ndarray:
        return np.moveaxis(a, 0, -1)

    arrays = {"recon": hwn(recon), "error": hwn(error), "brainmask": hwn(s.brain),
              "label": None if s.label is None else hwn(s.label)}
    return ConditionOutput(arrays, s.affine, record)


def _slicewise_output(net: Any, v: Any, batch_size: int, score: str, ctx: InferenceContext) -> ConditionOutput:
    """A volume through the 2D model slice by slice; results back on the volume grid."""
    from types import SimpleNamespace

    import torch

    from itermask.inference.outputs import detection_scores
    from itermask.inference.slicewise import slices_to_volume, volume_to_slices

    if ctx.field_of_view_mm is None:
        raise InputError("no 2D field of view (preprocess.slices2d.field_of_view_mm) to run on a volume",
                         path=v.paths["image"])
    sl = volume_to_slices(v, _model_size(ctx), int(ctx.meta["hf_radius"]), float(ctx.field_of_view_mm))
    recon = reconstruct(net, sl["image"], batch_size, ctx.device, ctx.amp)
    error = squared_error(sl["image"], recon, sl["brain"])
    res = [SimpleNamespace(recon=torch.from_numpy(r), error=torch.from_numpy(e), mask=torch.zeros(e.shape, dtype=bool))
           for r, e in zip(recon, error)]
    vol = slices_to_volume(v, sl, res)
    record = {"kind": "slicewise", "inputs": v.paths, "slices": sl["z"].tolist(), "units": "scaled_2d",
              "field_of_view_mm": float(ctx.field_of_view_mm),
              **detection_scores(vol["error"], None, v.brain, score)}
    arrays = {"recon": vol["recon"], "error": vol["error"], "input2d": sl["scaled"], "brainmask": v.brain,
              "label": v.label}
    return ConditionOutput(arrays, v.affine, record)
