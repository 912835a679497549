"""The per-image-best oracle (the papers' grey rows; METHOD.md §7 "per-image best"): uses the
test label, so its masks are labelled as such wherever they are written.

"Incrementally raising tau during the shrinking process and selecting the iteration with the
optimal performance per image" (IterMask2 paper): from a starting mask, the masks are iterated
at tau * factors[0] until they converge (change < ``tol``, at most ``max_iterations``
reconstructions), then tau is raised to the next factor and iterated again (``factors``
increasing), as the reference raises its tau each time the mask has converged; every
iteration's mask is a candidate and the one with the best Dice against the label wins (ties:
the earliest). IterMask2 starts from the first-iteration mask of each first-step percentile of
a grid (the reference searches keeping 90 % to 40 % of the brain) and keeps shrinking
(M <- M & [e > tau_k], converged when the relative shrink < tol); IterMask3D starts from the
whole brain and re-thresholds each iteration (M <- [e > tau_k], phase B's rule and change).
Samples run together in one batch (a subject's few test slices, or one volume), each with its
own convergence; noise per sample from its own seed (IterMask3D: drawn once or per iteration,
as its phase B).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from itermask.core.lockstep import (brain_quantile, make_generator, mask_change, mask_shrink, reconstruct,
                                    sample_noise, squared_error)
from itermask.core.model_input import compose_input


@dataclass
class OracleResult:
    """Best mask of one sample (CPU bool tensor) and how it was found."""

    mask: torch.Tensor
    dice: float
    iteration: int
    tau: float | None
    first_step_percentile: float | None


def dice(mask: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Dice per sample of (B, 1, ...) bool tensors (1 when both are empty)."""
    inter = (mask & label).flatten(1).sum(1).double()
    total = (mask.flatten(1).sum(1) + label.flatten(1).sum(1)).double()
    return torch.where(total == 0, torch.ones_like(total), 2 * inter / total.clamp(min=1))


class _Best:
    def __init__(self, n: int) -> None:
        self.items: list[OracleResult | None] = [None] * n

    def offer(self, masks: torch.Tensor, label: torch.Tensor, iteration: int, tau: float | None,
              first: float | None, index: Sequence[int] | None = None) -> None:
        """Candidate masks of the samples ``index`` (default: every sample, in order)."""
        scores = dice(masks, label).tolist()
        for pos, d in enumerate(scores):
            j = pos if index is None else index[pos]
            if self.items[j] is None or d > self.items[j].dice:
                self.items[j] = OracleResult(masks[pos, 0].cpu().clone(), float(d), iteration, tau, first)


def oracle_2d(first_model: nn.Module, masked_model: nn.Module, x: torch.Tensor, hf: torch.Tensor,
              brain: torch.Tensor, label: torch.Tensor, seeds: Sequence[int], *, tau: float,
              first_percentiles: Sequence[float], factors: Sequence[float], variant: str,
              device: torch.device | str, tol: float, max_iterations: int, amp: bool) -> list[OracleResult]:
    """IterMask2's oracle on n slices ((n, H, W) tensors; module docstring); ``amp``: config
    ``precision`` auto, as the inference's."""
    device = torch.device(device)
    x, hf = (t.float()[:, None].to(device) for t in (x, hf))
    brain, label = (t.bool()[:, None].to(device) for t in (brain, label))
    best = _Best(len(x))
    x_hat = reconstruct(first_model.eval(), compose_input(x, hf, brain, "hf_only"), amp=amp)
    err1 = squared_error(x, x_hat, brain)
    for fp in first_percentiles:
        mask = (err1 > brain_quantile(err1, brain, fp).view(-1, 1, 1, 1)) & brain
        best.offer(mask, label, 0, None, float(fp))
        gens = [make_generator(s, device) for s in seeds]
        k = 0
        for f in factors:
            active = list(range(len(x)))  # a converged slice waits for tau's raise: no draw, no reconstruction
            for _ in range(max_iterations):
                k += 1
                noise = sample_noise([gens[i] for i in active], x.shape[1:], device)
                xa, ba, old = x[active], brain[active], mask[active]
                x_hat = reconstruct(masked_model.eval(), compose_input(xa, hf[active], old, variant, noise=noise), amp=amp)
                new = old & (squared_error(xa, x_hat, ba) > tau * f)
                mask[active] = new
                best.offer(new, label[active], k, tau * f, float(fp), index=active)
                active = [i for i, s in zip(active, mask_shrink(new, old).tolist()) if s >= tol]
                if not active:
                    break
    return best.items  # type: ignore[return-value]


def oracle_3d(model: nn.Module, x: torch.Tensor, hf: torch.Tensor, brain: torch.Tensor, label: torch.Tensor,
              seed: int, *, tau: float, factors: Sequence[float], variant: str, device: torch.device | str,
              tol: float, max_iterations: int, fixed_noise: bool, amp: bool) -> OracleResult:
    """IterMask3D's oracle on one volume ((*spatial) tensors; module docstring). ``fixed_noise``:
    one noise draw reused at every iteration (config ``phase_b_noise`` "fixed"), else fresh;
    ``amp``: config ``precision`` auto, as the inference's."""
    device = torch.device(device)
    x, hf = (t.float()[None, None].to(device) for t in (x, hf))
    brain, label = (t.bool()[None, None].to(device) for t in (brain, label))
    best = _Best(1)
    mask, gen, k = brain.clone(), make_generator(seed, device), 0
    fresh = not fixed_noise and variant != "hf_only"
    once = None if fresh or variant == "hf_only" else sample_noise([gen], x.shape[1:], device)
    for f in factors:
        for _ in range(max_iterations):
            k += 1
            noise = sample_noise([gen], x.shape[1:], device) if fresh else once
            x_hat = reconstruct(model.eval(), compose_input(x, hf, mask, variant, noise=noise), amp=amp)
            new = (squared_error(x, x_hat, brain) > tau * f) & brain
            change = float(mask_change(new, mask)[0])
            mask = new
            best.offer(mask, label, k, tau * f, None)
            if change < tol:
                break
    return best.items[0]  # type: ignore[return-value]
