"""AE baseline (Baur et al., MedIA 2021; METHOD.md §10): the backbone UNet with its skip
connections removed, a bottleneck autoencoder trained with the whole-image MSE on healthy
scans. At test time x_hat = AE(x); anomaly map (x - x_hat)^2 in the brain; detection score
its mean over the brain. Everything else (2D/3D, inputs, inference) is shared with the DAE
in ``itermask.methods._baseline``; docs/baselines.md describes both.

Settings (schema ``method_defaults.ae``): network ``spatial_dims`` (3: IterMask3D's residual
UNet on volumes; 2: IterMask2's attention UNet on slices), the backbone's keys; infer
``batch_size``, ``score`` (``mean_error``).
"""
from __future__ import annotations

from typing import Any, Mapping

from itermask.methods._baseline import ReconstructionBaseline


class AE(ReconstructionBaseline):
    name = "ae"
    skip_connections = False

    def losses(self, settings: Any, networks: Mapping[str, Any], batch: Mapping[str, Any], generator: Any) -> dict:
        import torch.nn.functional as F

        x = batch["image"]
        return {"net": F.mse_loss(networks["net"](x).float(), x)}


METHOD = AE()
