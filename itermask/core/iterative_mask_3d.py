"""IterMask3D's iterative masking (METHOD.md §6): phase A (threshold curve, subject tau) and
phase B (shrink at tau) on lockstep batches (``itermask.core.lockstep`` gives the conventions).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from itermask.core.lockstep import (
    Sample,
    brain_quantile,
    make_generator,
    mask_change,
    reconstruct,
    run_lockstep,
    sample_noise,
    squared_error,
    stack,
)
from itermask.core.model_input import compose_input

#: chooses tau from a finished phase-A curve: curve -> (tau, info for the record)
TauChooser = Callable[[np.ndarray], tuple[float, Any]]

@dataclass(eq=False)
class Subject3D(Sample):
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
    noise_b: torch.Tensor | None = None  # phase B's one noise draw (phase_b_noise "fixed")
    masks_a: list[np.ndarray] = field(default_factory=list)  # phase-A masks, bit-packed on the host
    start_b: torch.Tensor | None = None  # phase B's first mask (None: the whole brain)


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


def phase_a_percents(step_percent: float, *, fine_from: float | None,
                     fine_step: float = 1.0) -> tuple[float, ...]:
    """Percent removed at each phase-A iteration: step, 2*step, ..., 100 (100/step iterations).

    With ``fine_from`` (config ``fine_from_percent``; None: none): step, 2*step, ..., fine_from,
    then steps of ``fine_step`` up to 100 (1 %, the reference's step; no config key) over the
    curve's last part, where it turns upwards.
    """
    n = round(100.0 / step_percent)
    if n < 1 or abs(n * step_percent - 100.0) > 1e-6:
        raise ValueError(f"step_percent must divide 100, got {step_percent}")
    coarse = tuple(i * 100.0 / n for i in range(1, n + 1))
    if fine_from is None:
        return coarse
    k = round(fine_from / step_percent)
    if not 0 < fine_from < 100 or abs(k * step_percent - fine_from) > 1e-6:
        raise ValueError(f"fine_from_percent must be a whole multiple of step_percent ({step_percent:g}) "
                         f"between 0 and 100, got {fine_from}")
    m = round((100.0 - fine_from) / fine_step) if fine_step > 0 else 0
    if m < 1 or abs(m * fine_step - (100.0 - fine_from)) > 1e-6:
        raise ValueError(f"the fine step ({fine_step:g} %) must divide 100 - fine_from_percent ({100 - fine_from:g})")
    return coarse[:k] + tuple(round(fine_from + j * fine_step, 6) for j in range(1, m + 1))


def _itermask3d_step(
    batch: list[Sample],
    *,
    model: nn.Module,
    variant: str,
    choose_tau: TauChooser,
    tol: float,
    max_iterations: int,
    amp: bool,
    fixed_noise_b: bool,
    keep_masks: bool,
) -> None:
    subs: list[Subject3D] = batch  # type: ignore[assignment]
    for s in subs:  # a subject entering phase B restarts from the whole brain (or its tau mask)
        if s.phase == "B" and s.iterations_b == 0:
            s.mask = s.brain.clone() if s.start_b is None else s.start_b.to(s.brain.device)
            s.start_b = None
    x, hf, brain, mask = (stack(subs, n) for n in ("x", "hf", "brain", "mask"))
    noise = None if variant == "hf_only" else _noise(subs, x.shape[1:], x.device, fixed_noise_b)
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
            if keep_masks:
                s.masks_a.append(np.packbits(s.mask.cpu().numpy().ravel()))
            s.iterations_a += 1
            if s.iterations_a == len(s.percents):
                s.tau, s.tau_info = choose_tau(np.asarray(s.curve, dtype=np.float64))
                s.start_b = _tau_mask(s)  # None without kept masks
                s.masks_a = []
                s.phase = "B"  # phase B starts (whole brain or tau mask) at this subject's next step

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


def _tau_mask(s: Subject3D) -> torch.Tensor | None:
    """Phase A's mask at k* (``tau_info.k``), M_k* = [e > T_k*], when tau is that curve point; else None."""
    k = getattr(s.tau_info, "k", None)
    if k is None or not 0 <= k < len(s.masks_a) or float(s.tau) != float(s.curve[k]):
        return None
    bits = np.unpackbits(s.masks_a[k], count=s.brain.numel()).astype(bool)
    return torch.from_numpy(bits).reshape(s.brain.shape)


def _noise(subs: list[Subject3D], shape: Sequence[int], device: torch.device, fixed_b: bool) -> torch.Tensor:
    """This step's fill noise, one row per subject: a fresh draw in phase A; in phase B one draw
    per subject reused at every iteration when ``fixed_b`` (phase B is then a deterministic
    fixed-point iteration, so its < tol stop measures convergence, not noise), else fresh."""
    rows = []
    for s in subs:
        if s.phase == "A" or not fixed_b:
            rows.append(sample_noise([s.gen_a if s.phase == "A" else s.gen_b], shape, device))
        else:
            if s.noise_b is None:
                s.noise_b = sample_noise([s.gen_b], shape, device)
            rows.append(s.noise_b)
    return torch.cat(rows, dim=0)


def _subject(x: torch.Tensor, hf: torch.Tensor, brain: torch.Tensor, seed: int, percents: Sequence[float],
             choose_tau: TauChooser, device: torch.device) -> Subject3D:
    """A subject's starting state (shape (1, 1, *spatial)); phase B at once without phase A."""
    b = brain.bool().reshape(1, 1, *brain.shape)
    s = Subject3D(
        x=x.float().reshape(b.shape), hf=hf.float().reshape(b.shape), brain=b, mask=b.clone(),
        gen_a=make_generator(seed, device), gen_b=make_generator(seed + 1, device),
        percents=tuple(float(p) for p in percents),
    )
    if not s.percents:
        s.tau, s.tau_info = choose_tau(np.zeros(0))
        s.phase = "B"
    return s


def _check_options(phase_b_noise: str, phase_b_start: str, max_iterations: int) -> None:
    if phase_b_noise not in ("fixed", "fresh"):
        raise ValueError(f"phase_b_noise must be 'fixed' or 'fresh', got {phase_b_noise!r}")
    if phase_b_start not in ("brain", "tau_mask"):
        raise ValueError(f"phase_b_start must be 'brain' or 'tau_mask', got {phase_b_start!r}")
    if max_iterations < 1:
        raise ValueError("max_iterations must be >= 1")


def run_itermask3d(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    hfs: Sequence[torch.Tensor],
    brains: Sequence[torch.Tensor],
    seeds: Sequence[int],
    *,
    percents: Sequence[float],
    choose_tau: TauChooser,
    variant: str,
    tol: float,
    max_iterations: int,
    batch_size: int,
    device: torch.device | str,
    amp: bool,
    phase_b_noise: str,
    phase_b_start: str,
) -> list[Result3D]:
    """IterMask3D for several subjects in lockstep (each tensor of shape (*spatial)).

    Phase A (``percents`` non-empty): M_0 = brain; iteration i reconstructs with M_{i-1} and
    sets T_i = ``brain_quantile``(e, percents[i]), M_i = [e > T_i] & brain. Then
    ``choose_tau(curve)`` gives tau. Phase B restarts from M = brain (or M_k*, below): M <- [e > tau] & brain
    (recomputed from e each time, so the mask can shrink or grow back) until the phase-B
    change < ``tol`` or ``max_iterations`` steps (``max_iterations=1`` is the single-step
    "-spatial" ablation). With empty ``percents`` phase A is skipped and ``choose_tau`` is
    called with an empty curve (re-thresholding at a given tau).
    ``variant`` is the network input (model_input.compose_input). Phase A draws noise from a
    generator seeded with ``seeds[k]``, phase B from one seeded with ``seeds[k] + 1``:
    ``phase_b_noise`` "fixed" draws phase B's noise once and reuses it at every iteration,
    "fresh" draws it anew at every iteration. ``phase_b_start`` "tau_mask" starts phase B from
    phase A's mask at k* (M_k* = [e > tau], the reference's ``best_threshold_mask``; phase A's
    masks are kept bit-packed on the host until tau is chosen) instead of the whole brain
    ("brain", the reference's default); when tau is not the curve's value at ``tau_info.k``
    (a fixed tau, no phase A) phase B starts from the whole brain either way. Every keyword has
    to be given (the experiment's settings; ``device``: config ``device`` resolved, ``amp``:
    config ``precision`` auto).
    """
    _check_options(phase_b_noise, phase_b_start, max_iterations)
    device = torch.device(device)
    subjects = [_subject(x, hf, brain, seed, percents, choose_tau, device)
                for x, hf, brain, seed in zip(images, hfs, brains, seeds, strict=True)]

    def step(batch: list[Sample]) -> None:
        _itermask3d_step(batch, model=model, variant=variant, choose_tau=choose_tau, tol=tol,
                         max_iterations=max_iterations, amp=amp, fixed_noise_b=phase_b_noise == "fixed",
                         keep_masks=phase_b_start == "tau_mask")

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


