"""The transposed-convolution form of upsample-then-convolve equals the two steps it replaces."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from itermask.core.networks import upsample_conv
from itermask.core.networks.upsample_conv import transposed_kernel, upsample_conv3d
from itermask.core.networks.unet3d import ResUNet3D


def _two_steps(h: torch.Tensor, conv: nn.Conv3d, full_res: torch.Tensor | None = None) -> torch.Tensor:
    up = F.interpolate(h, scale_factor=2, mode="nearest")
    return conv(up if full_res is None else torch.cat([up, full_res], dim=1))


@pytest.mark.parametrize("extra", [0, 2])
@pytest.mark.parametrize("shape", [(2, 5, 4, 6, 3), (1, 3, 1, 2, 5)])
def test_equals_nearest_upsampling_then_the_convolution(shape, extra):
    torch.manual_seed(0)
    h = torch.randn(*shape, dtype=torch.float64)
    conv = nn.Conv3d(shape[1] + extra, 7, 3, padding=1).double()
    full_res = torch.randn(shape[0], extra, *(2 * s for s in shape[2:]), dtype=torch.float64) if extra else None
    want = _two_steps(h, conv, full_res)
    got = upsample_conv3d(h, conv, full_res)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_gradients_reach_the_convolutions_own_weights_unchanged():
    torch.manual_seed(1)
    h = torch.randn(2, 4, 5, 5, 5, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 2, 10, 10, 10, dtype=torch.float64)
    conv = nn.Conv3d(6, 3, 3, padding=1).double()
    target = torch.randn(2, 3, 10, 10, 10, dtype=torch.float64)
    grads = []
    for fn in (_two_steps, upsample_conv3d):
        conv.zero_grad()
        h.grad = None
        ((fn(h, conv, x) - target) ** 2).sum().backward()
        grads.append((h.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()))
    for want, got in zip(*grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_one_tap_kernel_spreads_as_the_upsampled_convolution():
    # a single centre tap: each coarse voxel reaches exactly its own 2x2x2 block, so the
    # transposed kernel is 1 on the middle two taps of each axis, 0 on the outer ones
    w = torch.zeros(1, 1, 3, 3, 3)
    w[0, 0, 1, 1, 1] = 1.0
    k = transposed_kernel(w)[0, 0]
    want = torch.zeros(4, 4, 4)
    want[1:3, 1:3, 1:3] = 1.0
    assert torch.equal(k, want)


def test_keeps_channels_last_and_refuses_other_convolutions():
    h = torch.randn(1, 3, 4, 4, 4).contiguous(memory_format=torch.channels_last_3d)
    conv = nn.Conv3d(3, 2, 3, padding=1)
    assert upsample_conv3d(h, conv).is_contiguous(memory_format=torch.channels_last_3d)
    for bad in (nn.Conv3d(3, 2, 5, padding=2), nn.Conv3d(3, 2, 3, padding=1, stride=2),
                nn.Conv3d(3, 2, 3, padding=1, padding_mode="reflect")):
        with pytest.raises(ValueError, match="3x3x3, stride-1, zero-padding-1"):
            upsample_conv3d(h, bad)
    with pytest.raises(ValueError, match="3 \\+ 0 input channels for a convolution of 5"):
        upsample_conv3d(h, nn.Conv3d(5, 2, 3, padding=1))


@pytest.mark.parametrize("kw", [{"input_skip": True}, {"input_skip": False}, {"input_skip": False, "skip_connections": False}])
def test_unet_decoder_equals_upsample_then_convolve(kw):
    """The network's forward equals its two-step (reference) decoder, so a model file means the
    same network as before; the benchmarks' reference path runs the two steps."""
    torch.manual_seed(2)
    net = ResUNet3D(2, 1, channels=[4, 8, 16], dropout=0.0, residual="avgpool", **kw).double().eval()
    x = torch.randn(2, 2, 16, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        fused = net(x)
        net.transposed_upsampling = False
        two_steps = net(x)
    torch.testing.assert_close(fused, two_steps, rtol=0, atol=1e-12)


def test_training_after_inference_in_the_same_process():
    """The taps are cached from the first call, which may run under inference mode; a backward
    pass through the kernel built from them still works (nothing saves them for backward)."""
    upsample_conv._taps.cache_clear()  # the taps are made by the first call: under inference mode
    conv = nn.Conv3d(2, 2, 3, padding=1)
    h = torch.randn(1, 2, 2, 2, 2)
    with torch.inference_mode():
        upsample_conv3d(h, conv)
    upsample_conv3d(h, conv).sum().backward()
    assert conv.weight.grad is not None
