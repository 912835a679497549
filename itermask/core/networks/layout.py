"""Memory layout of the 3D networks: channels-last (NDHWC) or PyTorch's default (NCDHW).

On CPU oneDNN runs a 3D convolution channels-last about 1.3x faster per training step and
1.5-2x per lockstep forward at the demo size (docs/performance.md); config
``resources.channels_last`` chooses it for training and inference alike. Only 5-D weights and
tensors change layout, so a method's 2D networks are left as they are.
"""
from __future__ import annotations

import torch
from torch import nn


def memory_format(channels_last: bool) -> torch.memory_format:
    """``torch.channels_last_3d`` when ``channels_last``, else the default contiguous format."""
    return torch.channels_last_3d if channels_last else torch.contiguous_format


def in_layout(model: nn.Module, layout: torch.memory_format) -> nn.Module:
    """``model`` with its 5-D (3D convolution) weights in ``layout``; other parameters as they are
    (a method's networks may be 2D or 3D: baselines choose per experiment)."""
    for p in model.parameters():
        if p.dim() == 5:
            p.data = p.data.contiguous(memory_format=layout)
    return model
