"""Fakes shared by the iterative-mask tests (tests/core/test_iterative_mask.py) and the
inference-stage tests (tests/inference/test_inference_stage.py).

Fake networks with known reconstructions make the expected masks/thresholds computable
independently of the code under test.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

S = 32


# ----------------------------------------------------------------------------------------
# Fake networks
# ----------------------------------------------------------------------------------------
class Oracle(nn.Module):
    """Knows each sample's image x and healthy image h, found by the HF channel (the last).

    Masked voxels are those whose first input channel differs from x (masking noise);
    ``rule(x, h, masked) -> reconstruction``. For an input with only the HF channel,
    ``masked`` is None.
    """

    def __init__(self, entries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], rule) -> None:
        super().__init__()
        self.entries = [(hf.float(), x.float(), h.float()) for hf, x, h in entries]
        self.rule = rule
        self.batch_sizes: list[int] = []

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(inp.shape[0])
        outs = []
        for b in range(inp.shape[0]):
            hf_in = inp[b, -1]
            match = [(x, h) for hf, x, h in self.entries if torch.equal(hf, hf_in)]
            assert len(match) == 1, "sample not registered"
            x, h = match[0]
            masked = None if inp.shape[1] == 1 else inp[b, 0] != x
            outs.append(self.rule(x, h, masked)[None, None])
        return torch.cat(outs)


class FillPassThrough(nn.Module):
    """Returns its image channel: x outside the mask, the fill noise inside (error = (x - noise)^2),
    so every reconstruction and mask depends on the noise draws."""

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        return inp[:, :1]


def ball(center, radius, shape=(S, S, S)) -> torch.Tensor:
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, center)) <= radius**2


def cube(lo, hi, shape=(S, S, S)) -> torch.Tensor:
    m = torch.zeros(shape, dtype=torch.bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def cube_subject(seed: int, lo, hi, radius=13):
    g = torch.Generator().manual_seed(seed)
    brain = ball((15.5, 15.5, 15.5), radius)
    h = torch.where(brain, torch.randn((S, S, S), generator=g), torch.tensor(-3.0))
    anomaly = cube(lo, hi) & brain
    x = h + 0.15 * torch.randn((S, S, S), generator=g) * brain + 3.0 * anomaly
    hf = x + 100.0 + seed  # an identifier of the subject (the Oracle ignores its values)
    return x, hf, brain, h, anomaly


def inpaint_rule(x, h, masked):
    """Masked voxels -> the healthy image; visible voxels -> x pulled 30 % towards h."""
    return torch.where(masked, h, x - 0.3 * (x - h))

