"""Cyclic UNet baseline (Liang et al., MICCAI MMMI workshop 2023, code ZiyunLiang/MMCCD;
METHOD.md §10): two UNets trained on healthy paired scans of the same subject, a forward
network F translating the input sequence x into an intermediate sequence y and a backward
network B translating y back into x. At test time only the input sequence is read:
x_hat = B(F(x)); anomaly map (x - x_hat)^2 in the brain, score its mean. Tissue the two
translations never saw (a lesion) is translated badly and comes back wrong.

Training, as the MMCCD code trains its "unet" translation models: F and B are trained
independently, each with the mean squared error over the whole image against the real
target scan: loss_F = MSE(F(x), y), loss_B = MSE(B(y), x) (B learns from the *real*
intermediate, not from F(x)); one optimiser step each per training step, on the same batch.
The intermediate (``network.intermediate``; null: T1w for a FLAIR input, FLAIR otherwise, the
IterMask papers' choice) is read only in training (``InputSpec.sequences``), so a dataset
without it cannot train the method (the config check refuses it: ATLAS, T1w only, has no
Cyclic UNet cell in IterMask2 Table 2).

2D or 3D from config exactly as the AE/DAE (``itermask.methods._baseline``): both networks are
the backbone UNet with skips (3D: IterMask3D's residual UNet; 2D: IterMask2's attention UNet on
the slices files, slice-wise on volumes). The model file's meta holds the resolved
intermediate. On the validation scans: ``val_loss`` and ``val_loss_backward``, the two training
losses (beside the log's ``loss`` = F's and ``loss_backward``), and ``val_loss_cycle``, the
cycle's error MSE(B(F(x)), x) that inference measures.
docs/baselines.md describes the method and its experiments.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from itermask.errors import ConfigError
from itermask.methods._baseline import ReconstructionBaseline, backbone, spatial_dims
from itermask.methods.base import InputSpec

FLAIR, T1 = "FLAIR", "T1w"


def intermediate_sequence(settings: Any) -> str:
    """``network.intermediate``, or by the papers' rule: T1w for a FLAIR input, FLAIR otherwise."""
    chosen = settings.network["intermediate"]
    if chosen is not None:
        return str(chosen)
    return T1 if settings.sequence == FLAIR else FLAIR


class CyclicUNet(ReconstructionBaseline):
    name = "cyclic_unet"
    primary_network = "forward"
    skip_connections = True

    # -- inputs: the intermediate sequence in training only ------------------------------
    def train_inputs(self, settings: Any) -> InputSpec:
        return InputSpec(super().train_inputs(settings).kind, sequences=(intermediate_sequence(settings),))

    def describe(self, settings: Any) -> str:
        return f"{settings.sequence} → {intermediate_sequence(settings)} → {settings.sequence}"

    def check(self, settings: Any) -> None:
        super().check(settings)
        if intermediate_sequence(settings) == settings.sequence:
            raise ConfigError(f"experiment '{settings.name}': the Cyclic UNet's intermediate sequence must differ "
                              f"from its input sequence '{settings.sequence}' (set network.intermediate)")

    # -- training -------------------------------------------------------------------------
    def build_networks(self, settings: Any, image_shape: tuple[int, ...]) -> dict[str, Any]:
        meta = super().build_networks(settings, image_shape)
        meta["network"]["intermediate"] = intermediate_sequence(settings)
        meta["in_channels"] = {"forward": 1, "backward": 1}
        return meta

    def networks_from_meta(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        return {"forward": backbone(meta["network"]), "backward": backbone(meta["network"])}

    def reconstructor(self, networks: Mapping[str, Any]) -> Any:
        forward, backward = networks["forward"], networks["backward"]
        return lambda x: backward(forward(x))

    def losses(self, settings: Any, networks: Mapping[str, Any], batch: Mapping[str, Any], generator: Any) -> dict:
        import torch.nn.functional as F

        from itermask.training.data import sequence_key

        x, y = batch["image"], batch[sequence_key(intermediate_sequence(settings))]
        return {"forward": F.mse_loss(networks["forward"](x).float(), y),
                "backward": F.mse_loss(networks["backward"](y).float(), x)}

    def validation_losses(self, settings: Any, networks: Mapping[str, Any], val: Any, device: Any,
                          precision: Any) -> dict[str, float]:
        """Per-sample means over the validation samples (eval mode): ``val_loss`` = MSE(F(x), y),
        ``val_loss_backward`` = MSE(B(y), x), ``val_loss_cycle`` = MSE(B(F(x)), x)."""
        import torch
        import torch.nn.functional as F

        forward, backward = networks["forward"], networks["backward"]
        y_all = val.sequences[intermediate_sequence(settings)]
        was = {k: m.training for k, m in networks.items()}
        totals = {"val_loss": 0.0, "val_loss_backward": 0.0, "val_loss_cycle": 0.0}
        batch_size = int(settings.infer["batch_size"])
        for m in networks.values():
            m.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(val), batch_size):
                    idx = np.arange(start, min(start + batch_size, len(val)))
                    x, y = val.image[idx].to(device), y_all[idx].to(device)
                    with precision.context(device.type):
                        fx = forward(x)
                        found = {"val_loss": F.mse_loss(fx.float(), y),
                                 "val_loss_backward": F.mse_loss(backward(y).float(), x),
                                 "val_loss_cycle": F.mse_loss(backward(fx).float(), x)}
                    for k, v in found.items():
                        totals[k] += float(v) * len(idx)
        finally:
            for k, m in networks.items():
                m.train(was[k])
        return {k: v / len(val) for k, v in totals.items()}


METHOD = CyclicUNet()
