"""``AttnResUNet2D``: the residual 2D UNet of the IterMask2 reference (METHOD.md §5).

Multi-head spatial self-attention at chosen resolutions, BatchNorm + SiLU residual blocks,
resampling inside residual blocks, attention in the bottleneck; ``skip_connections=False``
drops the encoder-decoder skips (a bottleneck autoencoder: the AE baseline).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from itermask.core.networks.shapes import check_divisible
from itermask.errors import ConfigError


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
    Input sizes must be divisible by 2 ** (len(channels) - 1). The keyword-only arguments but
    ``skip_connections`` are the network settings (schema ``method_defaults.itermask2.network``
    holds their defaults; ``image_size``: the training slices' size, ``preprocess.slices2d.size``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        *,
        channels: Sequence[int],
        attention_res: Sequence[int],
        image_size: int,
        dropout: float,
        num_res_blocks: int,
        num_heads: int,
        middle_attention: bool,
        skip_connections: bool = True,
    ) -> None:
        super().__init__()
        c = [int(v) for v in channels]
        self.skip_connections = bool(skip_connections)
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
                skip = skips.pop() * self.skip_connections  # width of the skip (0 without skips)
                layers = [_ResBlock2D(ch + skip, c[level], dropout), *attention(c[level], level_res[level])]
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
            skip = hs.pop()
            h = stage(torch.cat([h, skip], dim=1) if self.skip_connections else h)
        return self.out(h)
