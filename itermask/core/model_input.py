"""The network input of IterMask: masked image plus high-frequency guidance (METHOD.md §4).

Variants:
- ``full``: channels = ((1 - M) * x + M * eps, HF(x))
- ``no_freq`` (ablation "-freq"): channels = ((1 - M) * x + M * eps,)
- ``hf_only`` (IterMask2's first-iteration model): channels = (HF(x),)
``no_spatial`` uses the ``full`` model, so it has the ``full`` input.
"""
from __future__ import annotations

import torch

VARIANT_CHANNELS = {"full": 2, "no_spatial": 2, "no_freq": 1, "hf_only": 1}


def in_channels(variant: str) -> int:
    """Number of input channels of the network for a variant."""
    try:
        return VARIANT_CHANNELS[variant]
    except KeyError:
        raise ValueError(f"unknown variant '{variant}', expected one of {sorted(VARIANT_CHANNELS)}") from None


def compose_input(
    x: torch.Tensor,
    hf: torch.Tensor,
    mask: torch.Tensor,
    variant: str,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Build the network input of `variant` (the network's input, from the experiment's
    ``variant``: ``_itermask.input_variant``) from image `x`, its HF image and the binary `mask`
    (1 = masked).

    All three have shape (B, 1, *spatial). Masked voxels are replaced by N(0, 1) noise
    (`noise` if given, else drawn with `generator` on x's device).
    """
    if variant == "hf_only":
        return hf
    m = mask.to(x.dtype)
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    masked = (1 - m) * x + m * noise
    if variant == "no_freq":
        return masked
    if variant in ("full", "no_spatial"):
        return torch.cat([masked, hf], dim=1)
    raise ValueError(f"unknown variant '{variant}', expected one of {sorted(VARIANT_CHANNELS)}")
