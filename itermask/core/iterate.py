"""Batched iterative inference of IterMask3D and IterMask2 (METHOD.md §6), pure tensor logic.

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
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from itermask.core.model_input import compose_input

#: chooses tau from a finished phase-A curve: curve -> (tau, info for the record)
TauChooser = Callable[[np.ndarray], tuple[float, Any]]


# ----------------------------------------------------------------------------------------
# Small batched building blocks
# ----------------------------------------------------------------------------------------
def reconstruct(model: nn.Module, inp: torch.Tensor, *, amp: bool = True) -> torch.Tensor:
    """Run ``model`` without gradients (autocast float16 on CUDA when ``amp``); float32 out."""
    use_amp = amp and inp.device.type == "cuda"
    with torch.inference_mode(), torch.autocast(device_type=inp.device.type, dtype=torch.float16, enabled=use_amp):
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
class _Sample:
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
    samples: Iterable[_Sample],
    step: Callable[[list[_Sample]], None],
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
    active: list[_Sample] = []
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


def _stack(samples: Sequence[_Sample], name: str) -> torch.Tensor:
    return torch.cat([getattr(s, name) for s in samples], dim=0)


# ----------------------------------------------------------------------------------------
# IterMask3D
# ----------------------------------------------------------------------------------------
@dataclass(eq=False)
class Subject3D(_Sample):
    """State of one subject: phase A (threshold curve), then phase B (fixed tau)."""

    gen_a: torch.Generator | None = None
    gen_b: torch.Generator | None = None
    percents: tuple[float, ...] = ()
    phase: str = "A"
    curve: list[float] = field(default_factory=list)
    tau: float | None = None
    tau_info: Any = None
    iterations_a: int = 0
    iterations_b: int = 0
    changes: list[float] = field(default_factory=list)
    converged: bool = False


@dataclass
class Result3D:
    """Outputs of IterMask3D for one subject (CPU tensors of shape (*spatial))."""

    recon: torch.Tensor
    error: torch.Tensor
    mask: torch.Tensor
    curve: np.ndarray
    percents: np.ndarray
    tau: float
    tau_info: Any
    iterations_a: int
    iterations_b: int
    changes: list[float]
    converged: bool
    seconds: float


def phase_a_percents(step_percent: float) -> tuple[float, ...]:
    """Percent removed at each phase-A iteration: step, 2*step, ..., 100 (100/step iterations)."""
    n = round(100.0 / step_percent)
    if n < 1 or abs(n * step_percent - 100.0) > 1e-6:
        raise ValueError(f"step_percent must divide 100, got {step_percent}")
    return tuple(i * 100.0 / n for i in range(1, n + 1))


def _itermask3d_step(
    batch: list[_Sample],
    *,
    model: nn.Module,
    variant: str,
    choose_tau: TauChooser,
    tol: float,
    max_iterations: int,
    amp: bool,
) -> None:
    subs: list[Subject3D] = batch  # type: ignore[assignment]
    for s in subs:  # a subject entering phase B restarts from the whole brain
        if s.phase == "B" and s.iterations_b == 0:
            s.mask = s.brain.clone()
    x, hf, brain, mask = (_stack(subs, n) for n in ("x", "hf", "brain", "mask"))
    gens = [s.gen_a if s.phase == "A" else s.gen_b for s in subs]
    noise = None if variant == "hf_only" else sample_noise(gens, x.shape[1:], x.device)
    x_hat = reconstruct(model, compose_input(x, hf, mask, variant, noise=noise), amp=amp)
    err = squared_error(x, x_hat, brain)

    ia = [i for i, s in enumerate(subs) if s.phase == "A"]
    if ia:
        sel = torch.tensor(ia, device=x.device)
        pct = torch.tensor([subs[i].percents[subs[i].iterations_a] for i in ia], device=x.device)
        thr = brain_quantile(err[sel], brain[sel], pct)
        new_masks = (err[sel] > thr.view(-1, *[1] * (err.dim() - 1))) & brain[sel]
        thr_list = thr.tolist()
        for j, i in enumerate(ia):
            s = subs[i]
            s.curve.append(float(thr_list[j]))
            s.mask = new_masks[j : j + 1]
            s.iterations_a += 1
            if s.iterations_a == len(s.percents):
                s.tau, s.tau_info = choose_tau(np.asarray(s.curve, dtype=np.float64))
                s.phase = "B"  # phase B starts (from the whole brain) at this subject's next step

    ib = [i for i, s in enumerate(subs) if s.phase == "B" and i not in ia]
    if ib:
        sel = torch.tensor(ib, device=x.device)
        taus = torch.tensor([float(subs[i].tau) for i in ib], device=x.device, dtype=torch.float32)
        new_masks = (err[sel] > taus.view(-1, *[1] * (err.dim() - 1))) & brain[sel]
        changes = mask_change(new_masks, mask[sel]).tolist()
        for j, i in enumerate(ib):
            s = subs[i]
            s.mask = new_masks[j : j + 1]
            s.recon, s.error = x_hat[i : i + 1], err[i : i + 1]
            s.iterations_b += 1
            s.changes.append(float(changes[j]))
            s.converged = changes[j] < tol
            if s.converged or s.iterations_b >= max_iterations:
                s.phase, s.done = "done", True


def run_itermask3d(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    hfs: Sequence[torch.Tensor],
    brains: Sequence[torch.Tensor],
    seeds: Sequence[int],
    *,
    percents: Sequence[float],
    choose_tau: TauChooser,
    variant: str = "full",
    tol: float = 0.01,
    max_iterations: int = 30,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    amp: bool = True,
) -> list[Result3D]:
    """IterMask3D for several subjects in lockstep (each tensor of shape (*spatial)).

    Phase A (``percents`` non-empty): M_0 = brain; iteration i reconstructs with M_{i-1} and
    sets T_i = ``brain_quantile``(e, percents[i]), M_i = [e > T_i] & brain. Then
    ``choose_tau(curve)`` gives tau. Phase B restarts from M = brain: M <- [e > tau] & brain
    (recomputed from e each time, so the mask can shrink or grow back) until the phase-B
    change < ``tol`` or ``max_iterations`` steps (``max_iterations=1`` is the single-step
    "-spatial" ablation). With empty ``percents`` phase A is skipped and ``choose_tau`` is
    called with an empty curve (re-thresholding at a given tau).
    ``variant`` is the network input (model_input.compose_input). Phase A draws noise from a
    generator seeded with ``seeds[k]``, phase B from one seeded with ``seeds[k] + 1``.
    """
    device = torch.device(device)
    if max_iterations < 1:
        raise ValueError("max_iterations must be >= 1")
    subjects = []
    for x, hf, brain, seed in zip(images, hfs, brains, seeds, strict=True):
        b = brain.bool().reshape(1, 1, *brain.shape)
        s = Subject3D(
            x=x.float().reshape(b.shape), hf=hf.float().reshape(b.shape), brain=b, mask=b.clone(),
            gen_a=make_generator(seed, device), gen_b=make_generator(seed + 1, device),
            percents=tuple(float(p) for p in percents),
        )
        if not s.percents:
            s.tau, s.tau_info = choose_tau(np.zeros(0))
            s.phase = "B"
        subjects.append(s)

    def step(batch: list[_Sample]) -> None:
        _itermask3d_step(batch, model=model, variant=variant, choose_tau=choose_tau, tol=tol,
                         max_iterations=max_iterations, amp=amp)

    model.eval()
    run_lockstep(subjects, step, batch_size=batch_size, device=device)
    return [
        Result3D(
            recon=s.recon[0, 0], error=s.error[0, 0], mask=s.mask[0, 0], curve=np.asarray(s.curve),
            percents=np.asarray(s.percents[: s.iterations_a]), tau=float(s.tau), tau_info=s.tau_info,
            iterations_a=s.iterations_a, iterations_b=s.iterations_b, changes=s.changes,
            converged=s.converged, seconds=s.seconds,
        )
        for s in subjects
    ]


# ----------------------------------------------------------------------------------------
# IterMask2
# ----------------------------------------------------------------------------------------
@dataclass(eq=False)
class Slice2D(_Sample):
    """State of one 2D slice: first-iteration step, then shrinking masked iterations."""

    gen: torch.Generator | None = None
    first_done: bool = False
    first_mask: torch.Tensor | None = None
    iterations: int = 0
    shrinks: list[float] = field(default_factory=list)
    converged: bool = False

    _TENSORS = _Sample._TENSORS + ("first_mask",)


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
    batch: list[_Sample],
    *,
    first_model: nn.Module,
    masked_model: nn.Module,
    variant: str,
    tau: float,
    first_percentile: float,
    tol: float,
    max_iterations: int,
    amp: bool,
) -> None:
    slices: list[Slice2D] = batch  # type: ignore[assignment]
    first = [s for s in slices if not s.first_done]
    if first:
        x, hf, brain = (_stack(first, n) for n in ("x", "hf", "brain"))
        x_hat = reconstruct(first_model, compose_input(x, hf, brain, "hf_only"), amp=amp)
        err = squared_error(x, x_hat, brain)
        thr = brain_quantile(err, brain, first_percentile)
        m1 = (err > thr.view(-1, 1, 1, 1)) & brain
        for j, s in enumerate(first):
            s.mask = m1[j : j + 1]
            s.first_mask = s.mask
            s.recon, s.error = x_hat[j : j + 1], err[j : j + 1]
            s.first_done = True
            if max_iterations == 0:
                s.done = True
    just_started = {id(s) for s in first}
    rest = [s for s in slices if s.first_done and not s.done and id(s) not in just_started]
    if rest:
        x, hf, brain, mask = (_stack(rest, n) for n in ("x", "hf", "brain", "mask"))
        noise = sample_noise([s.gen for s in rest], x.shape[1:], x.device)
        x_hat = reconstruct(masked_model, compose_input(x, hf, mask, variant, noise=noise), amp=amp)
        err = squared_error(x, x_hat, brain)
        new = mask & (err > tau)
        shrink = mask_shrink(new, mask).tolist()
        for j, s in enumerate(rest):
            s.mask = new[j : j + 1]
            s.recon, s.error = x_hat[j : j + 1], err[j : j + 1]
            s.iterations += 1
            s.shrinks.append(float(shrink[j]))
            s.converged = shrink[j] < tol
            s.done = s.converged or s.iterations >= max_iterations


def run_itermask2(
    first_model: nn.Module,
    masked_model: nn.Module,
    images: torch.Tensor,
    hfs: torch.Tensor,
    brains: torch.Tensor,
    seeds: Sequence[int],
    *,
    tau: float,
    variant: str = "full",
    first_percentile: float = 40.0,
    tol: float = 0.01,
    max_iterations: int = 30,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    amp: bool = True,
) -> list[Result2D]:
    """IterMask2 for n slices (``images``/``hfs``/``brains``: (n, H, W)) in lockstep.

    Step 1: the first-iteration model (input HF only) gives e_1; M_1 = the slice's brain
    pixels with e_1 above its ``first_percentile``-th percentile (``brain_quantile``). Then
    M_{k+1} = M_k & [e_k > tau] with e_k from the masked model, until the relative shrink
    < ``tol`` or ``max_iterations`` masked steps. The final error is (x - x_hat)^2 of the
    last reconstruction, in the brain; the final mask is the last M.
    """
    device = torch.device(device)
    if len(seeds) != len(images):
        raise ValueError(f"one seed per slice is needed: {len(seeds)} seeds for {len(images)} slices")
    slices = []
    for k, seed in enumerate(seeds):
        b = brains[k].bool().reshape(1, 1, *brains[k].shape)
        slices.append(Slice2D(x=images[k].float().reshape(b.shape), hf=hfs[k].float().reshape(b.shape),
                              brain=b, gen=make_generator(seed, device)))

    def step(batch: list[_Sample]) -> None:
        _itermask2_step(batch, first_model=first_model, masked_model=masked_model, variant=variant, tau=tau,
                        first_percentile=first_percentile, tol=tol, max_iterations=max_iterations, amp=amp)

    first_model.eval()
    masked_model.eval()
    run_lockstep(slices, step, batch_size=batch_size, device=device)
    return [
        Result2D(recon=s.recon[0, 0], error=s.error[0, 0], mask=s.mask[0, 0], first_mask=s.first_mask[0, 0],
                 iterations=s.iterations, shrinks=s.shrinks, converged=s.converged)
        for s in slices
    ]
