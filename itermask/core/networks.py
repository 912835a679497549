"""The reconstruction networks of IterMask3D and IterMask2 (METHOD.md §5) and model file I/O.

- ``ResUNet3D``: residual UNet of the IterMask3D reference. Encoder: one residual unit per
  level (two MONAI ``Convolution`` blocks, BatchNorm / dropout / PReLU), stride 2 on every level
  but the last; the residual path is a parameter-free average pool added onto the first
  input-width channels (reference) or MONAI's convolutional ``ResidualUnit`` (``residual: conv``).
  Decoder: concatenate the skip, nearest upsampling, two 3x3x3 convolutions.
- ``AttnResUNet2D``: residual UNet with multi-head spatial self-attention at chosen
  resolutions (IterMask2 reference: BatchNorm + SiLU residual blocks, resampling inside
  residual blocks, attention in the bottleneck).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from itermask.io.atomic import atomic_path
from itermask.errors import ConfigError, InputError

METHODS = ("itermask3d", "itermask2")
DEFAULTS_3D: dict[str, Any] = {"channels": [16, 32, 64, 128, 256], "dropout": 0.2, "residual": "avgpool"}
DEFAULTS_2D: dict[str, Any] = {
    "channels": [32, 32, 64, 96, 128],
    "attention_res": [32, 16, 8],
    "dropout": 0.1,
    "num_res_blocks": 2,
    "num_heads": 1,
    "middle_attention": True,
    "image_size": None,
}


# --------------------------------------------------------------------------------------
# 3D
def _monai_blocks() -> tuple[type, type]:
    """MONAI's Convolution and ResidualUnit, imported on first use: ``import monai`` loads all
    of MONAI (about 3 s), which the 2D networks and the modules that only read models skip."""
    from monai.networks.blocks import Convolution, ResidualUnit

    return Convolution, ResidualUnit


class _EncoderUnit3D(nn.Module):
    """Two conv blocks (the first strided); residual = average pool added onto the first channels."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        if cout < cin:
            raise ConfigError(f"encoder widths must not decrease (got {cin} -> {cout})")
        Convolution, _ = _monai_blocks()
        kw = dict(spatial_dims=3, kernel_size=3, norm="batch", act="prelu", dropout=dropout, adn_ordering="NDA")
        self.conv = nn.Sequential(
            Convolution(in_channels=cin, out_channels=cout, strides=stride, **kw),
            Convolution(in_channels=cout, out_channels=cout, strides=1, **kw),
        )
        self.residual = nn.AvgPool3d(kernel_size=3, stride=stride, padding=1) if stride != 1 else nn.Identity()
        self.cin = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        res = self.residual(x)
        return torch.cat([out[:, : self.cin] + res, out[:, self.cin :]], dim=1)


class ResUNet3D(nn.Module):
    """Residual 3D UNet; input size must be divisible by 2 ** (len(channels) - 1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        dropout: float = 0.2,
        residual: str = "avgpool",
    ) -> None:
        super().__init__()
        c = [int(v) for v in channels]
        if len(c) < 2:
            raise ConfigError(f"network.channels needs at least 2 widths, got {c}")
        if residual not in ("avgpool", "conv"):
            raise ConfigError(f"network.residual must be 'avgpool' or 'conv', got '{residual}'")
        self.factor = 2 ** (len(c) - 1)
        Convolution, ResidualUnit = _monai_blocks()
        self.encoder = nn.ModuleList()
        cin = in_channels
        for i, cout in enumerate(c):
            stride = 2 if i < len(c) - 1 else 1
            if residual == "conv":
                unit: nn.Module = ResidualUnit(
                    spatial_dims=3, in_channels=cin, out_channels=cout, strides=stride, kernel_size=3,
                    subunits=2, norm="batch", act="prelu", dropout=dropout,
                )
            else:
                unit = _EncoderUnit3D(cin, cout, stride, dropout)
            self.encoder.append(unit)
            cin = cout
        kw = dict(spatial_dims=3, kernel_size=3, strides=1, norm="batch", act="prelu", dropout=dropout)
        self.decoder = nn.ModuleList()
        n = len(c)
        prev = c[-1]
        for t in range(1, n):
            skip = c[n - 1 - t]
            width = prev + skip
            last = t == n - 1
            cout = out_channels if last else c[n - 2 - t]
            self.decoder.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    Convolution(in_channels=width, out_channels=width, **kw),
                    Convolution(in_channels=width, out_channels=cout, conv_only=last, **kw),
                )
            )
            prev = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x.shape[2:], self.factor)
        skips = []
        h = x
        for unit in self.encoder:
            h = unit(h)
            skips.append(h)
        h = skips.pop()
        for stage in self.decoder:
            h = stage(torch.cat([h, skips.pop()], dim=1))
        return h


def check_divisible(spatial: Sequence[int], factor: int) -> None:
    """Raise ValueError unless every spatial size is a positive multiple of `factor`."""
    if any(int(s) % factor or int(s) == 0 for s in spatial):
        raise ValueError(f"input size {tuple(int(s) for s in spatial)} must be divisible by {factor}")


# --------------------------------------------------------------------------------------
# 2D
def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class _ResBlock2D(nn.Module):
    """BN-SiLU-(resample)-conv, BN-SiLU-dropout-conv(zero init); skip = identity or 1x1 conv."""

    def __init__(self, cin: int, cout: int, dropout: float, resample: str | None = None) -> None:
        super().__init__()
        self.norm_in = nn.Sequential(nn.BatchNorm2d(cin), nn.SiLU())
        self.conv_in = nn.Conv2d(cin, cout, 3, padding=1)
        self.out = nn.Sequential(
            nn.BatchNorm2d(cout), nn.SiLU(), nn.Dropout(dropout), _zero(nn.Conv2d(cout, cout, 3, padding=1))
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)
        if resample == "down":
            self.resample: nn.Module = nn.AvgPool2d(2)
        elif resample == "up":
            self.resample = nn.Upsample(scale_factor=2, mode="nearest")
        else:
            self.resample = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.resample(self.norm_in(x))
        x = self.resample(x)
        h = self.out(self.conv_in(h))
        return self.skip(x) + h


class SpatialSelfAttention2D(nn.Module):
    """Multi-head self-attention over all pixels (BatchNorm, 1x1 qkv, zero-initialised output)."""

    def __init__(self, channels: int, num_heads: int = 1, resolution: int | None = None) -> None:
        super().__init__()
        if channels % num_heads:
            raise ConfigError(f"attention width {channels} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.resolution = resolution
        self.norm = nn.BatchNorm2d(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = (t.transpose(-1, -2) for t in qkv.unbind(1))  # (b, heads, hw, ch)
        a = F.scaled_dot_product_attention(q, k, v)
        a = a.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(a)


class _Stage(nn.Module):
    """A residual block optionally followed by attention and/or a resampling block."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class AttnResUNet2D(nn.Module):
    """Residual 2D UNet with self-attention at the resolutions (px) in `attention_res`.

    Resolutions refer to an input of `image_size` px: level l works at image_size / 2**l.
    Input sizes must be divisible by 2 ** (len(channels) - 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        channels: Sequence[int] = (32, 32, 64, 96, 128),
        attention_res: Sequence[int] = (32, 16, 8),
        image_size: int = 128,
        dropout: float = 0.1,
        num_res_blocks: int = 2,
        num_heads: int = 1,
        middle_attention: bool = True,
    ) -> None:
        super().__init__()
        c = [int(v) for v in channels]
        n = len(c)
        if n < 2:
            raise ConfigError(f"network.channels needs at least 2 widths, got {c}")
        self.factor = 2 ** (n - 1)
        if image_size % self.factor:
            raise ConfigError(f"image_size {image_size} must be divisible by {self.factor}")
        level_res = [image_size // 2**level for level in range(n)]
        attn = {int(r) for r in attention_res}
        unknown = sorted(attn - set(level_res))
        if unknown:
            raise ConfigError(f"network.attention_res {unknown} px are not UNet resolutions {level_res} "
                              f"of a {image_size} px input")

        def attention(ch: int, res: int) -> list[nn.Module]:
            return [SpatialSelfAttention2D(ch, num_heads, res)] if res in attn else []

        self.inp = nn.Conv2d(in_channels, c[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips = [c[0]]
        ch = c[0]
        for level, width in enumerate(c):
            for _ in range(num_res_blocks):
                self.down.append(_Stage(_ResBlock2D(ch, width, dropout), *attention(width, level_res[level])))
                ch = width
                skips.append(ch)
            if level < n - 1:
                self.down.append(_Stage(_ResBlock2D(ch, ch, dropout, "down")))
                skips.append(ch)
        mid_attn = [SpatialSelfAttention2D(ch, num_heads, level_res[-1])] if middle_attention else []
        self.middle = _Stage(_ResBlock2D(ch, ch, dropout), *mid_attn, _ResBlock2D(ch, ch, dropout))
        self.up = nn.ModuleList()
        for level in reversed(range(n)):
            for i in range(num_res_blocks + 1):
                layers = [_ResBlock2D(ch + skips.pop(), c[level], dropout), *attention(c[level], level_res[level])]
                ch = c[level]
                if level > 0 and i == num_res_blocks:
                    layers.append(_ResBlock2D(ch, ch, dropout, "up"))
                self.up.append(_Stage(*layers))
        self.out = nn.Sequential(nn.BatchNorm2d(ch), nn.SiLU(), _zero(nn.Conv2d(ch, out_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x.shape[2:], self.factor)
        h = self.inp(x)
        hs = [h]
        for stage in self.down:
            h = stage(h)
            hs.append(h)
        h = self.middle(h)
        for stage in self.up:
            h = stage(torch.cat([h, hs.pop()], dim=1))
        return self.out(h)


# --------------------------------------------------------------------------------------
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
        return ResUNet3D(in_channels, 1, s["channels"], float(s["dropout"]), s["residual"])
    if s["image_size"] is None:
        raise ConfigError("itermask2 network needs 'image_size' (the training slice size in px)")
    return AttnResUNet2D(
        in_channels, 1, s["channels"], s["attention_res"], int(s["image_size"]), float(s["dropout"]),
        int(s["num_res_blocks"]), int(s["num_heads"]), bool(s["middle_attention"]),
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_models(path: str | Path, models: dict[str, nn.Module], meta: dict) -> None:
    """Save state dicts (on CPU) and `meta` atomically as {"meta": ..., "state_dicts": ...}.

    `meta` must hold "method", "network" and "in_channels" ({model key: channels}).
    """
    for key in ("method", "network", "in_channels"):
        if key not in meta:
            raise ValueError(f"model meta lacks '{key}'")
    states = {k: {n: t.detach().cpu().clone() for n, t in m.state_dict().items()} for k, m in models.items()}
    with atomic_path(path) as tmp:
        torch.save({"meta": meta, "state_dicts": states}, tmp)


def load_models(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, nn.Module], dict]:
    """Rebuild the networks saved by `save_models`; returns ({key: model in eval mode}, meta)."""
    path = Path(path)
    if not path.exists():
        raise InputError("model file does not exist", path=path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta, states = blob["meta"], blob["state_dicts"]
    except Exception as exc:
        raise InputError(f"cannot read model file ({type(exc).__name__}: {exc})", path=path) from exc
    models = {}
    for key, state in states.items():
        try:
            model = build_network(meta["method"], int(meta["in_channels"][key]), meta["network"])
            model.load_state_dict(state)
        except (KeyError, RuntimeError, ConfigError) as exc:
            raise InputError(f"model '{key}' does not match its stored settings ({exc})", path=path) from exc
        models[key] = model.to(device).eval()
    return models, meta

