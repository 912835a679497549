"""Network settings (defaults per method) and building the network of a method."""
from __future__ import annotations

from typing import Any

from torch import nn

from itermask.core.networks.unet2d import AttnResUNet2D
from itermask.core.networks.unet3d import ResUNet3D
from itermask.errors import ConfigError

METHODS = ("itermask3d", "itermask2")
DEFAULTS_3D: dict[str, Any] = {"channels": [16, 32, 64, 128, 256], "dropout": 0.2, "residual": "avgpool",
                               "input_skip": False}
DEFAULTS_2D: dict[str, Any] = {
    "channels": [32, 32, 64, 96, 128],
    "attention_res": [32, 16, 8],
    "dropout": 0.1,
    "num_res_blocks": 2,
    "num_heads": 1,
    "middle_attention": True,
    "image_size": None,
}


def network_settings(method: str, network_cfg: dict) -> dict[str, Any]:
    """Network settings with defaults filled in; unknown keys raise ConfigError."""
    if method not in METHODS:
        raise ConfigError(f"unknown method '{method}', expected one of {list(METHODS)}")
    defaults = DEFAULTS_3D if method == "itermask3d" else DEFAULTS_2D
    unknown = sorted(set(network_cfg) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown network keys for {method}: {unknown} (known: {sorted(defaults)})")
    return {**defaults, **network_cfg}


def build_network(method: str, in_channels: int, network_cfg: dict) -> nn.Module:
    """Build the network of `method` ("itermask3d" or "itermask2") with one output channel.

    For itermask2, `network_cfg["image_size"]` (px of the training slices) is required: it
    maps `attention_res` (px) to UNet levels.
    """
    s = network_settings(method, network_cfg)
    if method == "itermask3d":
        return ResUNet3D(in_channels, 1, s["channels"], float(s["dropout"]), s["residual"],
                         input_skip=bool(s["input_skip"]))
    if s["image_size"] is None:
        raise ConfigError("itermask2 network needs 'image_size' (the training slice size in px)")
    return AttnResUNet2D(
        in_channels, 1, s["channels"], s["attention_res"], int(s["image_size"]), float(s["dropout"]),
        int(s["num_res_blocks"]), int(s["num_heads"]), bool(s["middle_attention"]),
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
