"""Lockstep iteration of many samples on one device (METHOD.md §6), pure tensor logic.

Many samples (3D subjects or 2D slices) advance in *lockstep*: the active batch holds up to
``batch_size`` samples, each with its own mask, noise generator, iteration counter and stop
flag. A sample that stops leaves the batch at once and the next queued sample takes its
place, so finished samples cost no compute. Every sample draws its masking noise from its
own seeded generator and the networks run in eval mode, so a sample's result does not depend
on which other samples share its batch (equal to running it alone, up to the floating-point
reproducibility of the network's kernels across batch sizes).

Conventions (all tensors (B, 1, *spatial); masks bool; errors float32):
- error  e = (x - x_hat)^2 inside the brain, 0 outside.
- phase-A threshold at p % removed: the smallest error value T such that at least p % of the
  sample's brain voxels have e <= T (NumPy ``quantile(..., method="inverted_cdf")``), so
  M = [e > T] keeps the top (100 - p) % of the brain (fewer when values tie).
- phase-B change = |M_new xor M_old| / |M_old| (relative to the previous mask's size; when the
  previous mask is empty: 0 if the new one is empty too, else infinite).
- IterMask2 shrink = (|M_old| - |M_new|) / |M_old| (0 when M_old is empty).
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from itermask.io.device import autocast


# ----------------------------------------------------------------------------------------
# Small batched building blocks
# ----------------------------------------------------------------------------------------
def reconstruct(model: nn.Module, inp: torch.Tensor, *, amp: bool) -> torch.Tensor:
    """Run ``model`` without gradients (when ``amp``, config ``precision`` auto: under the
    autocast of every forward pass, calibration's too: ``io.device.autocast``, bf16 on CUDA and
    on CPUs with bf16 in hardware); float32 out."""
    with torch.inference_mode(), autocast(inp.device.type, amp):
        out = model(inp)
    return out.float()


def squared_error(x: torch.Tensor, x_hat: torch.Tensor, brain: torch.Tensor) -> torch.Tensor:
    """(x - x_hat)^2 inside the brain, 0 outside (float32)."""
    return torch.where(brain, (x.float() - x_hat.float()) ** 2, torch.zeros((), device=x.device))


def brain_quantile(err: torch.Tensor, brain: torch.Tensor, percent: torch.Tensor | float) -> torch.Tensor:
    """Per-sample threshold leaving the top (100 - percent) % of each sample's brain voxels.

    ``err``/``brain``: (B, ...); ``percent``: scalar or (B,) in [0, 100]. Returns (B,) float32:
    the ceil(n * percent / 100)-th smallest brain error (1-based, at least the 1st), n = the
    sample's brain voxel count; i.e. NumPy's ``quantile(e[brain], percent/100, method="inverted_cdf")``.
    Brain sizes may differ between samples (sort with +inf outside the brain, then gather).
    """
    b = err.shape[0]
    flat = err.reshape(b, -1).float()
    inside = brain.reshape(b, -1)
    n = inside.sum(dim=1)
    if bool((n == 0).any()):
        raise ValueError("brain_quantile: a sample has an empty brain mask")
    vals = torch.where(inside, flat, torch.full((), math.inf, device=flat.device))
    ordered = torch.sort(vals, dim=1).values
    pct = torch.as_tensor(percent, dtype=torch.float64, device=flat.device).expand(b)
    count = torch.ceil(n.double() * pct / 100.0).long()
    idx = (torch.minimum(count, n) - 1).clamp(min=0)
    return ordered.gather(1, idx[:, None]).squeeze(1)


def count(mask: torch.Tensor) -> torch.Tensor:
    """Number of True voxels per sample, (B,) int64."""
    return mask.reshape(mask.shape[0], -1).sum(dim=1)


def mask_change(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Phase-B change per sample: |new xor old| / |old| (0 / inf when |old| = 0), float64 (B,)."""
    diff = count(new ^ old).double()
    size = count(old).double()
    ratio = diff / size.clamp(min=1)
    return torch.where(size == 0, torch.where(diff == 0, 0.0, math.inf), ratio)


def mask_shrink(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """IterMask2 relative shrink per sample: (|old| - |new|) / |old| (0 when |old| = 0)."""
    size = count(old).double()
    return (size - count(new).double()) / size.clamp(min=1)


def sample_noise(generators: Sequence[torch.Generator], shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """N(0, 1) noise of shape (len(generators), *shape), row i drawn from generators[i] only."""
    return torch.cat(
        [torch.randn((1, *shape), generator=g, device=device, dtype=torch.float32) for g in generators], dim=0
    )


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed`` (reduced to 63 bits)."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(seed) % (2**63 - 1))
    return g


# ----------------------------------------------------------------------------------------
# Lockstep scheduler
# ----------------------------------------------------------------------------------------
@dataclass(eq=False)
class Sample:
    """Common per-sample state: inputs, current mask, stop flag, timing."""

    x: torch.Tensor
    hf: torch.Tensor
    brain: torch.Tensor
    mask: torch.Tensor | None = None
    done: bool = False
    recon: torch.Tensor | None = None
    error: torch.Tensor | None = None
    started: float = 0.0
    seconds: float = 0.0

    _TENSORS = ("x", "hf", "brain", "mask", "recon", "error")

    def move(self, device: torch.device) -> None:
        for name in self._TENSORS:
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))


def run_lockstep(
    samples: Iterable[Sample],
    step: Callable[[list[Sample]], None],
    *,
    batch_size: int,
    device: torch.device,
) -> None:
    """Advance ``samples`` in lockstep batches of at most ``batch_size`` until all are done.

    Samples are moved to ``device`` when they join the batch and back to the CPU (tensors
    cloned, so no batch tensor stays alive) when they stop; ``step`` updates every sample of
    the batch once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    queue = deque(s for s in samples if not s.done)
    active: list[Sample] = []
    while queue or active:
        while queue and len(active) < batch_size:
            s = queue.popleft()
            s.move(device)
            s.started = time.perf_counter()
            active.append(s)
        step(active)
        still = []
        for s in active:
            if s.done:
                s.seconds = time.perf_counter() - s.started
                for name in s._TENSORS:  # outputs may be views of batch tensors: own them
                    t = getattr(s, name)
                    if t is not None:
                        setattr(s, name, t.detach().clone())
                s.move(torch.device("cpu"))
            else:
                still.append(s)
        active = still


def stack(samples: Sequence[Sample], name: str) -> torch.Tensor:
    return torch.cat([getattr(s, name) for s in samples], dim=0)


