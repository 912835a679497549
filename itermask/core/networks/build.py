"""Building the network of a method from its network settings (every key required: the schema,
``method_defaults.<method>.network``, holds the defaults; a model file's meta stores them all)."""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from itermask.core.networks.unet2d import AttnResUNet2D
from itermask.core.networks.unet3d import ResUNet3D
from itermask.errors import ConfigError, InputError

METHODS = ("itermask3d", "itermask2")
#: the network settings each method's networks are built from (their defaults: the schema's
#: method_defaults.<method>.network; itermask2's image_size: the training slices' size in px)
KEYS_3D = ("channels", "dropout", "residual", "input_skip")
KEYS_2D = ("channels", "attention_res", "dropout", "num_res_blocks", "num_heads", "middle_attention", "image_size")


def network_settings(method: str, network_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The network settings of ``method``, every key required: unknown keys raise ConfigError,
    missing ones InputError (a model file's meta written without them; the study fills every
    key from the schema)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method '{method}', expected one of {list(METHODS)}")
    keys = KEYS_3D if method == "itermask3d" else KEYS_2D
    unknown = sorted(set(network_cfg) - set(keys))
    if unknown:
        raise ConfigError(f"unknown network keys for {method}: {unknown} (known: {sorted(keys)})")
    missing = [k for k in keys if k not in network_cfg]
    if missing:
        raise InputError(f"{method} network settings lack {missing} (a model file written before these keys "
                         "were stored: retrain it)")
    return dict(network_cfg)


def build_network(method: str, in_channels: int, network_cfg: Mapping[str, Any]) -> nn.Module:
    """Build the network of `method` ("itermask3d" or "itermask2") with one output channel from
    every one of its settings (``KEYS_3D`` / ``KEYS_2D``; itermask2's ``image_size``, px of the
    training slices, maps ``attention_res`` (px) to UNet levels)."""
    s = network_settings(method, network_cfg)
    if method == "itermask3d":
        return ResUNet3D(in_channels, 1, channels=s["channels"], dropout=float(s["dropout"]),
                         residual=s["residual"], input_skip=bool(s["input_skip"]))
    if s["image_size"] is None:
        raise ConfigError("itermask2 network needs 'image_size' (the training slice size in px)")
    return AttnResUNet2D(
        in_channels, 1, channels=s["channels"], attention_res=s["attention_res"], image_size=int(s["image_size"]),
        dropout=float(s["dropout"]), num_res_blocks=int(s["num_res_blocks"]), num_heads=int(s["num_heads"]),
        middle_attention=bool(s["middle_attention"]),
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
