"""IterMask2's iterative masking (METHOD.md §6): the first-iteration mask, then the shrinking
masked iterations, on lockstep batches (``itermask.core.lockstep`` gives the conventions).
tau is one value for every slice (IterMask2's calibration) or one per slice: the
subject-specific tau of IterMask3D, each slice its own "subject" (`phase_a_taus`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from itermask.core.iterative_mask_3d import Result3D, TauChooser, run_itermask3d

from itermask.core.lockstep import (
    Sample,
    brain_quantile,
    make_generator,
    mask_shrink,
    reconstruct,
    run_lockstep,
    sample_noise,
    squared_error,
    stack,
)
from itermask.core.model_input import compose_input


@dataclass(eq=False)
class Slice2D(Sample):
    """State of one 2D slice: first-iteration step, then shrinking masked iterations."""

    gen: torch.Generator | None = None
    tau: float = 0.0
    first_done: bool = False
    first_mask: torch.Tensor | None = None
    iterations: int = 0
    shrinks: list[float] = field(default_factory=list)
    converged: bool = False

    _TENSORS = Sample._TENSORS + ("first_mask",)


@dataclass
class Result2D:
    """Outputs of IterMask2 for one slice (CPU tensors of shape (H, W))."""

    recon: torch.Tensor
    error: torch.Tensor
    mask: torch.Tensor
    first_mask: torch.Tensor
    iterations: int
    shrinks: list[float]
    converged: bool


def _itermask2_step(
    batch: list[Sample],
    *,
    first_model: nn.Module,
    masked_model: nn.Module,
    variant: str,
    first_percentile: float,
    tol: float,
    max_iterations: int,
    single_step: bool,
    amp: bool,
) -> None:
    slices: list[Slice2D] = batch  # type: ignore[assignment]
    first = [s for s in slices if not s.first_done]
    if first:
        x, hf, brain = (stack(first, n) for n in ("x", "hf", "brain"))
        x_hat = reconstruct(first_model, compose_input(x, hf, brain, "hf_only"), amp=amp)
        err = squared_error(x, x_hat, brain)
        thr = brain_quantile(err, brain, first_percentile)
        m1 = (err > thr.view(-1, 1, 1, 1)) & brain
        single = (err > _taus(first, err)) & brain
        for j, s in enumerate(first):
            s.mask = m1[j : j + 1]
            s.first_mask = s.mask
            s.recon, s.error = x_hat[j : j + 1], err[j : j + 1]
            s.first_done = True
            if single_step:  # -spatial: the first model's reconstruction alone, thresholded at tau
                s.mask = single[j : j + 1]
            if max_iterations == 0 or single_step:
                s.done = True
    just_started = {id(s) for s in first}
    rest = [s for s in slices if s.first_done and not s.done and id(s) not in just_started]
    if rest:
        x, hf, brain, mask = (stack(rest, n) for n in ("x", "hf", "brain", "mask"))
        noise = sample_noise([s.gen for s in rest], x.shape[1:], x.device)
        x_hat = reconstruct(masked_model, compose_input(x, hf, mask, variant, noise=noise), amp=amp)
        err = squared_error(x, x_hat, brain)
        new = mask & (err > _taus(rest, err))
        shrink = mask_shrink(new, mask).tolist()
        for j, s in enumerate(rest):
            s.mask = new[j : j + 1]
            s.recon, s.error = x_hat[j : j + 1], err[j : j + 1]
            s.iterations += 1
            s.shrinks.append(float(shrink[j]))
            s.converged = shrink[j] < tol
            s.done = s.converged or s.iterations >= max_iterations


def _taus(slices: list[Slice2D], like: torch.Tensor) -> torch.Tensor:
    """Each slice's tau, shaped (B, 1, 1, 1) to compare with a batch of errors."""
    return torch.tensor([s.tau for s in slices], device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)


def run_itermask2(
    first_model: nn.Module,
    masked_model: nn.Module,
    images: torch.Tensor,
    hfs: torch.Tensor,
    brains: torch.Tensor,
    seeds: Sequence[int],
    *,
    tau: float | Sequence[float],
    variant: str,
    first_percentile: float,
    tol: float,
    max_iterations: int,
    batch_size: int,
    device: torch.device | str,
    amp: bool,
    single_step: bool,
) -> list[Result2D]:
    """IterMask2 for n slices (``images``/``hfs``/``brains``: (n, H, W)) in lockstep.

    Step 1: the first-iteration model (input HF only) gives e_1; M_1 = the slice's brain
    pixels with e_1 above its ``first_percentile``-th percentile (``brain_quantile``). Then
    M_{k+1} = M_k & [e_k > tau] with e_k from the masked model, until the relative shrink
    < ``tol`` or ``max_iterations`` masked steps. ``tau``: one value for every slice or one
    per slice (e.g. `phase_a_taus`). The final error is (x - x_hat)^2 of the
    last reconstruction, in the brain; the final mask is the last M.
    ``single_step`` (the ``-spatial`` ablation, METHOD.md §6): step 1 only: the error and
    reconstruction are the first-iteration model's (from the HF image alone), the mask is
    [e_1 > tau] in the brain, and no masked iteration runs. Every keyword has to be given (the
    experiment's settings: ``first_percentile`` is ``first_step_percentile``, ``single_step``
    follows variant ``no_spatial``; ``device``: config ``device`` resolved, ``amp``: ``precision`` auto).
    """
    device = torch.device(device)
    if len(seeds) != len(images):
        raise ValueError(f"one seed per slice is needed: {len(seeds)} seeds for {len(images)} slices")
    try:
        taus = [float(t) for t in tau]  # type: ignore[union-attr]
    except TypeError:  # one tau for every slice
        taus = [float(tau)] * len(seeds)  # type: ignore[arg-type]
    if len(taus) != len(seeds):
        raise ValueError(f"one tau per slice is needed: {len(taus)} taus for {len(seeds)} slices")
    slices = []
    for k, seed in enumerate(seeds):
        b = brains[k].bool().reshape(1, 1, *brains[k].shape)
        slices.append(Slice2D(x=images[k].float().reshape(b.shape), hf=hfs[k].float().reshape(b.shape),
                              brain=b, gen=make_generator(seed, device), tau=taus[k]))

    def step(batch: list[Sample]) -> None:
        _itermask2_step(batch, first_model=first_model, masked_model=masked_model, variant=variant,
                        first_percentile=first_percentile, tol=tol, max_iterations=max_iterations,
                        single_step=single_step, amp=amp)

    first_model.eval()
    masked_model.eval()
    run_lockstep(slices, step, batch_size=batch_size, device=device)
    return [
        Result2D(recon=s.recon[0, 0], error=s.error[0, 0], mask=s.mask[0, 0], first_mask=s.first_mask[0, 0],
                 iterations=s.iterations, shrinks=s.shrinks, converged=s.converged)
        for s in slices
    ]



def phase_a_taus(
    masked_model: nn.Module,
    images: torch.Tensor,
    hfs: torch.Tensor,
    brains: torch.Tensor,
    seeds: Sequence[int],
    *,
    percents: Sequence[float],
    choose_tau: TauChooser,
    variant: str,
    batch_size: int,
    device: torch.device | str,
    amp: bool,
) -> list[Result3D]:
    """The subject-specific tau of each of n slices (``images``/``hfs``/``brains``: (n, H, W)):
    IterMask3D's phase A (`run_itermask3d`, dimension-agnostic) with the masked model, M_0 =
    the slice's brain, T_i leaves the top (100 - percents[i]) % of its pixels, then
    ``choose_tau(curve)``; results' ``tau``, ``tau_info``, ``curve`` and ``percents`` are
    what counts. ``run_itermask3d`` always runs at least one phase-B step: it is capped at one
    (1 / len(percents) of phase A's cost) and its mask and error are not used (so its noise and
    start, which no setting of IterMask2 chooses, are fixed here).
    """
    if len(seeds) != len(images):
        raise ValueError(f"one seed per slice is needed: {len(seeds)} seeds for {len(images)} slices")
    if not len(images):
        return []
    return run_itermask3d(masked_model, list(images), list(hfs), list(brains), list(seeds), percents=percents,
                          choose_tau=choose_tau, variant=variant, tol=1.0, max_iterations=1,
                          batch_size=batch_size, device=device, amp=amp, phase_b_noise="fixed",
                          phase_b_start="brain")
