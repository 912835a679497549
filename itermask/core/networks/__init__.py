"""The reconstruction networks of IterMask3D and IterMask2 (METHOD.md §5) and model file I/O.

- ``unet3d``: ``ResUNet3D``, the residual UNet of the IterMask3D reference (MONAI blocks,
  imported when a 3D network is built);
- ``unet2d``: ``AttnResUNet2D``, the residual UNet with spatial self-attention of IterMask2;
- ``build``: the network settings per method (every key required), ``build_network``, ``count_parameters``;
- ``model_file``: ``save_models`` / ``read_model_file`` (state dicts + a meta dict of plain values);
- ``shapes``: ``check_divisible``, the input-size check of both UNets.
"""
from __future__ import annotations

from itermask.core.networks.build import (
    KEYS_2D,
    KEYS_3D,
    METHODS,
    build_network,
    count_parameters,
    network_settings,
)
from itermask.core.networks.model_file import read_model_file, save_models
from itermask.core.networks.shapes import check_divisible
from itermask.core.networks.unet2d import AttnResUNet2D, SpatialSelfAttention2D
from itermask.core.networks.unet3d import ResUNet3D

__all__ = [
    "AttnResUNet2D",
    "KEYS_2D",
    "KEYS_3D",
    "METHODS",
    "ResUNet3D",
    "SpatialSelfAttention2D",
    "build_network",
    "check_divisible",
    "count_parameters",
    "read_model_file",
    "network_settings",
    "save_models",
]
