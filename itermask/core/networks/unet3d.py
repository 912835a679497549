"""``ResUNet3D``: the residual 3D UNet of the IterMask3D reference (METHOD.md §5).

Encoder: one residual unit per level (two MONAI ``Convolution`` blocks, BatchNorm / dropout /
PReLU), stride 2 on every level but the last; the residual path is a parameter-free average pool
added onto the first input-width channels (reference) or MONAI's convolutional ``ResidualUnit``
(``residual: conv``). Decoder: concatenate the skip, nearest upsampling, two 3x3x3 convolutions;
``skip_connections=False`` drops the skips (a bottleneck autoencoder: the AE baseline). The
upsampling and the first convolution run as one transposed convolution of the same parameters
(``upsample_conv.py``: equal to rounding, 2-3x faster).
``input_skip=True`` (not in the reference) also concatenates the network input to the last
decoder stage after its upsampling: a full-resolution skip. The reference's first level is
strided, so its finest features are at twice the voxel size: fine at 1 mm, but at the demo's
4 mm the network cannot reproduce 4-mm sulci and ventricle borders even where they are visible.
MONAI is imported when a network is built, not when this module is.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from itermask.core.networks.shapes import check_divisible
from itermask.core.networks.upsample_conv import upsample_conv3d
from itermask.errors import ConfigError


def _monai_blocks() -> tuple[type, type]:
    """MONAI's Convolution and ResidualUnit, imported on first use: ``import monai`` loads all
    of MONAI (about 3 s), which the 2D networks and the modules that only read models skip."""
    from monai.networks.blocks import Convolution, ResidualUnit

    return Convolution, ResidualUnit


class _PaddedAvgPool3d(nn.Module):
    """``AvgPool3d(3, stride, padding=1)`` (zeros counted in the mean) as an explicit zero pad and
    an unpadded pool: the same values, but it also runs on an axis of 2 voxels (a 16-voxel axis at
    the fourth level), which PyTorch's padded pool refuses as smaller than its kernel."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(F.pad(x, (1,) * 6), kernel_size=3, stride=self.stride)


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
        self.residual = _PaddedAvgPool3d(stride) if stride != 1 else nn.Identity()
        self.cin = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        res = self.residual(x)
        return torch.cat([out[:, : self.cin] + res, out[:, self.cin :]], dim=1)


class ResUNet3D(nn.Module):
    """Residual 3D UNet; input size must be divisible by 2 ** (len(channels) - 1).

    ``channels``, ``dropout``, ``residual``, ``input_skip``: the network settings (schema
    ``method_defaults.itermask3d.network`` holds their defaults); ``skip_connections`` False:
    the AE baseline's UNet without skips.
    """

    #: each decoder stage's upsampling and first convolution as one transposed convolution
    #: (``upsample_conv.py``); False runs the two steps, as the reference code (the benchmarks'
    #: reference path). The same function of the same weights either way.
    transposed_upsampling: bool = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        *,
        channels: Sequence[int],
        dropout: float,
        residual: str,
        input_skip: bool,
        skip_connections: bool = True,
    ) -> None:
        super().__init__()
        c = [int(v) for v in channels]
        self.skip_connections = bool(skip_connections)
        self.input_skip = bool(input_skip)
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
            width = prev + (skip if self.skip_connections else 0)
            last = t == n - 1
            cout = out_channels if last else c[n - 2 - t]
            extra = in_channels if last and self.input_skip else 0
            self.decoder.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    Convolution(in_channels=width + extra, out_channels=width, **kw),
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
        for k, stage in enumerate(self.decoder):
            skip = skips.pop()
            h = torch.cat([h, skip], dim=1) if self.skip_connections else h
            full_res = x if self.input_skip and k == len(self.decoder) - 1 else None  # joins after upsampling
            upsample, first, *rest = stage
            if self.transposed_upsampling:
                h = first.adn(upsample_conv3d(h, first.conv, full_res))
            else:
                h = upsample(h)
                h = first(h if full_res is None else torch.cat([h, full_res], dim=1))
            for block in rest:
                h = block(h)
        return h
