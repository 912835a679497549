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
Samples run together in one batch (IterMask2: a subject's few test slices at every first-step
percentile of the grid; IterMask3D: one volume), each with its own convergence; noise per sample
from its own seed (IterMask3D: drawn once or per iteration, as its phase B).
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
    """The best candidate mask of each of ``n`` samples: the highest Dice, ties to the candidate
    first in (group, iteration) order, the order in which a one-group-at-a-time search meets them."""

    def __init__(self, n: int) -> None:
        self.items: list[OracleResult | None] = [None] * n
        self.keys: list[tuple[int, int]] = [(0, 0)] * n

    def offer(self, masks: torch.Tensor, label: torch.Tensor, iteration: int | Sequence[int], tau: float | None,
              first: float | None | Sequence[float], index: Sequence[int] | None = None,
              group: int | Sequence[int] = 0) -> None:
        """Candidate masks of the samples ``index`` (default: every sample, in order);
        ``iteration``, ``first`` and ``group``: one value for all, or one per candidate."""
        scores = dice(masks, label).tolist()
        for pos, d in enumerate(scores):
            j = pos if index is None else index[pos]
            it, fp, g = (v[pos] if isinstance(v, Sequence) else v for v in (iteration, first, group))
            held = self.items[j]
            if held is None or d > held.dice or (d == held.dice and (g, it) < self.keys[j]):
                self.items[j] = OracleResult(masks[pos, 0].cpu().clone(), float(d), it, tau, fp)
                self.keys[j] = (g, it)


def oracle_2d(first_model: nn.Module, masked_model: nn.Module, x: torch.Tensor, hf: torch.Tensor,
              brain: torch.Tensor, label: torch.Tensor, seeds: Sequence[int], *, tau: float,
              first_percentiles: Sequence[float], factors: Sequence[float], variant: str,
              device: torch.device | str, tol: float, max_iterations: int, amp: bool) -> list[OracleResult]:
    """IterMask2's oracle on n slices ((n, H, W) tensors; module docstring); ``amp``: config
    ``precision`` auto, as the inference's.

    The first-step percentiles run side by side: one batch of (percentile, slice) samples, each
    with its own generator from its slice's seed and its own iteration count per percentile, so
    every sample draws and iterates as a search of that percentile alone would."""
    device = torch.device(device)
    x, hf = (t.float()[:, None].to(device) for t in (x, hf))
    brain, label = (t.bool()[:, None].to(device) for t in (brain, label))
    n, groups = len(x), len(first_percentiles)
    best = _Best(n)
    x_hat = reconstruct(first_model.eval(), compose_input(x, hf, brain, "hf_only"), amp=amp)
    err1 = squared_error(x, x_hat, brain)
    firsts = []
    for g, fp in enumerate(first_percentiles):
        firsts.append((err1 > brain_quantile(err1, brain, fp).view(-1, 1, 1, 1)) & brain)
        best.offer(firsts[-1], label, 0, None, float(fp), group=g)
    if not groups:
        return best.items  # type: ignore[return-value]
    mask = torch.cat(firsts)  # sample s: percentile s // n, slice s % n
    xs, hfs, brains, labels = (t.repeat(groups, 1, 1, 1) for t in (x, hf, brain, label))
    gens = [make_generator(s, device) for _ in first_percentiles for s in seeds]
    k = [0] * groups  # reconstructions so far per percentile, as its own search counts them
    for f in factors:
        active = list(range(len(xs)))  # a converged sample waits for tau's raise: no draw, no reconstruction
        for _ in range(max_iterations):
            for g in {s // n for s in active}:
                k[g] += 1
            noise = sample_noise([gens[s] for s in active], x.shape[1:], device)
            xa, ba, old = xs[active], brains[active], mask[active]
            x_hat = reconstruct(masked_model.eval(), compose_input(xa, hfs[active], old, variant, noise=noise), amp=amp)
            new = old & (squared_error(xa, x_hat, ba) > tau * f)
            mask[active] = new
            best.offer(new, labels[active], [k[s // n] for s in active], tau * f,
                       [float(first_percentiles[s // n]) for s in active], index=[s % n for s in active],
                       group=[s // n for s in active])
            active = [s for s, shrink in zip(active, mask_shrink(new, old).tolist()) if shrink >= tol]
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
