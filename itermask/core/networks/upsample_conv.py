"""Nearest 2x upsampling followed by a 3x3x3 convolution, computed as one transposed convolution.

The 3D UNet's decoder stages upsample (nearest, x2) and then convolve (3x3x3, padding 1) at the
finer resolution. Per axis, output voxel ``2i`` of that pair sees ``h[i-1]`` with tap ``w0`` and
``h[i]`` with ``w1 + w2``; voxel ``2i+1`` sees ``h[i]`` with ``w0 + w1`` and ``h[i+1]`` with ``w2``.
That is a transposed convolution (stride 2, padding 1) with the 4-tap kernel
``[w2, w1 + w2, w0 + w1, w0]`` per axis: the same function of the same parameters (equal to
rounding), with 8 multiply-adds per output voxel and channel pair instead of 27 and no
upsampled copy of the input. On this project's CPUs it runs a decoder stage's first convolution
2.2-3x faster (forward and backward; the demo's 3D training step 1.4x); the network's parameters,
model files and outputs stay those of the upsample-then-convolve network.
"""
from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional as F

# rows: the transposed kernel's 4 taps; columns: the 3x3x3 kernel's taps that sum into each
_TAPS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


@functools.lru_cache(maxsize=None)
def _taps(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``_TAPS`` on ``device``, made once: a host-to-device copy at every call would make each
    decoder stage wait for the GPU."""
    return torch.tensor(_TAPS, dtype=dtype, device=device)


def transposed_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, 3, 3, 3) convolution weight -> the (in, out, 4, 4, 4) transposed-convolution
    weight of the same upsample-then-convolve map."""
    taps = _taps(weight.device, weight.dtype)
    return torch.einsum("td,ue,vf,oidef->iotuv", taps, taps, taps, weight)


def upsample_conv3d(h: torch.Tensor, conv: nn.Conv3d, full_res: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(cat([upsample_nearest_2x(h), full_res]))`` for a 3x3x3, stride-1, padding-1 ``conv``:
    ``h``'s part as one transposed convolution, ``full_res`` (optional channels already at the
    finer resolution: the network input of ``input_skip``) convolved as it is. The result is in
    ``h``'s memory layout (channels-last stays so)."""
    if conv.kernel_size != (3, 3, 3) or conv.stride != (1, 1, 1) or conv.padding != (1, 1, 1) \
            or conv.dilation != (1, 1, 1) or conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError(f"upsample_conv3d needs a 3x3x3, stride-1, zero-padding-1 convolution, got {conv}")
    c = h.shape[1]
    extra = 0 if full_res is None else full_res.shape[1]
    if c + extra != conv.in_channels:
        raise ValueError(f"upsample_conv3d: {c} + {extra} input channels for a convolution of {conv.in_channels}")
    out = F.conv_transpose3d(h, transposed_kernel(conv.weight[:, :c]), conv.bias, stride=2, padding=1)
    if full_res is not None:
        out = out + F.conv3d(full_res, conv.weight[:, c:], padding=1)
    return out
