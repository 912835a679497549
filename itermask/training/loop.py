"""Stage ``train``: the training loop shared by every method, with exact resume.

The method (``itermask.methods``) supplies its networks, the corruption of a batch and one
loss per network; this loop owns the rest: optimiser and learning-rate schedule, autocast on
CUDA (GradScaler for fp16), EMA of the weights, checkpoints and resume, progress, loss log
and curve. Every random draw of a step is a function of (seed, step): the batch order of an
epoch, the method's corruption, the rot90 augmentation, the noise generator handed to the
method and dropout. Checkpoints also store all generator states, so a killed run that
resumes ends, on CPU, with exactly the weights of an uninterrupted run.
"""
from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from itermask import methods
from itermask.config.settings import ExperimentSettings, TrainSettings
from itermask.core.networks import check_divisible, count_parameters, save_models
from itermask.core.networks.layout import in_layout, memory_format
from itermask.errors import ConfigError, InputError
from itermask.io.device import precision_labels, resolve_device
from itermask.io.seeds import derive_seed
from itermask.training.checkpoint import (checkpoint_folder, config_hash, data_fingerprint, load_checkpoint,
                                          load_scaler, rng_states, save_checkpoint, set_rng_states)
from itermask.training.data import Samples, load_samples, make_batch, total_steps
from itermask.training.precision import Precision, deterministic, pick_precision
from itermask.training.report import plot_losses, write_loss_tsv


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int, warmup: bool) -> None:
    """EMA of the parameters (buffers copied); with warmup decay = min(decay, (1+t)/(10+t))."""
    d = min(decay, (1 + step) / (10 + step)) if warmup else decay
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(d).add_(p.detach(), alpha=1 - d)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


@dataclass
class TrainState:
    """Networks (in training order) with their EMA copies, optimisers, schedulers, scalers."""

    models: dict[str, nn.Module]
    emas: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    scalers: dict[str, torch.amp.GradScaler]
    history: dict[str, Any] = field(default_factory=dict)
    step: int = 0

    PARTS = ("models", "emas", "optimizers", "schedulers", "scalers")

    def state_dict(self, chash: str) -> dict[str, Any]:
        out = {part: {k: m.state_dict() for k, m in getattr(self, part).items()} for part in self.PARTS}
        return {"config_hash": chash, "step": self.step, "history": self.history, "rng": rng_states(), **out}

    def load(self, ckpt: dict[str, Any]) -> None:
        for part in self.PARTS:
            for k, m in getattr(self, part).items():
                if part == "scalers":  # may be skipped across device types (load_scaler)
                    load_scaler(m, ckpt[part][k])
                else:
                    m.load_state_dict(ckpt[part][k])
        self.step, self.history = int(ckpt["step"]), ckpt["history"]
        set_rng_states(ckpt["rng"])

    @property
    def final(self) -> dict[str, nn.Module]:
        """The weights to save and validate: the EMA copies when EMA is on."""
        return self.emas or self.models


def new_state(models: dict[str, nn.Module], s: TrainSettings, n_steps: int, device: torch.device,
              precision: Precision, primary: str) -> TrainState:
    """Optimiser (Adam/AdamW), step schedule (one drop at ``lr_drop_at``), scaler, EMA per network."""
    emas = {k: copy.deepcopy(m).eval() for k, m in models.items()} if s.ema is not None else {}
    opt_cls = torch.optim.Adam if s.optimizer == "adam" else torch.optim.AdamW
    optimizers = {k: opt_cls(m.parameters(), lr=float(s.lr), weight_decay=float(s.weight_decay))
                  for k, m in models.items()}
    milestones = [] if s.lr_drop_at is None else [int(round(float(s.lr_drop_at) * n_steps))]
    gamma = 1.0 if s.lr_drop_at is None else float(s.lr_after_drop) / float(s.lr)
    schedulers = {k: torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma) for k, o in optimizers.items()}
    scalers = {k: torch.amp.GradScaler(device.type, enabled=precision.scaler) for k in models}
    history: dict[str, Any] = {"loss": [], "val": {}}
    history.update({f"loss_{k}": [] for k in models if k != primary})
    return TrainState(models, emas, optimizers, schedulers, scalers, history)


def check_train_settings(s: TrainSettings, spatial: tuple[int, ...]) -> None:
    """ConfigError for settings that cannot run on images of shape ``spatial``."""
    if (s.steps is None) == (s.epochs is None):
        raise ConfigError("train: set exactly one of 'steps' and 'epochs' (set the other to null)")
    if s.lr_drop_at is not None and s.lr_after_drop is None:
        raise ConfigError("train.lr_drop_at needs train.lr_after_drop")
    if s.rot90_p > 0:
        axes = [int(a) for a in s.rot90_axes]
        sizes = {spatial[a] for a in axes if a < len(spatial)}
        if len(axes) != 2 or len(set(axes)) != 2 or max(axes) >= len(spatial) or len(sizes) != 1:
            raise ConfigError(f"train.rot90_axes {list(s.rot90_axes)} must name 2 axes of equal size "
                              f"(image size {spatial}); or set train.rot90_p: 0")


def load_data(method: methods.Method, settings: ExperimentSettings, train_items: list[dict],
              val_items: list[dict]) -> tuple[Samples, Samples | None]:
    """Training and validation samples, read as the method's train InputSpec says."""
    kind = method.train_inputs(settings).kind
    data = load_samples(train_items, kind, dataset=settings.dataset)
    val = load_samples(val_items, kind, dataset=settings.dataset) if val_items else None
    if method.needs_validation(settings) and val is None:
        raise InputError(f"{method.name} needs validation samples (healthy) and none were given",
                         dataset=settings.dataset)
    if val is not None and val.spatial != data.spatial:
        raise InputError(f"validation size {val.spatial} differs from training size {data.spatial}",
                         dataset=settings.dataset)
    return data, val


def resume(state: TrainState, root: str, chash: str, n_steps: int, log: Callable[[str], Any]) -> str:
    """Load this configuration's newest checkpoint (if any) into ``state``; returns its folder."""
    folder = str(checkpoint_folder(root, chash))  # this configuration's own folder
    ckpt = load_checkpoint(folder, chash, log)
    if ckpt is not None:
        state.load(ckpt)
        log(f"resuming from checkpoint at step {state.step}/{n_steps} in {folder}")
    else:
        log(f"no checkpoint of this configuration: starting at step 0; checkpoints go to {folder}")
    return folder


def build_networks(method: methods.Method, settings: ExperimentSettings, spatial: tuple[int, ...]) -> dict[str, Any]:
    """The method's network meta for images of shape ``spatial`` (InputError when they do not fit)."""
    net_meta = method.build_networks(settings, spatial)
    try:
        check_divisible(spatial, 2 ** (len(net_meta["network"]["channels"]) - 1))
    except ValueError as exc:
        raise InputError(f"training images do not fit the network: {exc}", dataset=settings.dataset) from None
    return net_meta


def train_experiment(
    settings: ExperimentSettings,
    train_items: list[dict],
    val_items: list[dict],
    *,
    out_model: str,
    out_loss_tsv: str,
    out_loss_png: str,
    checkpoint_dir: str,
    device: str,
    amp: bool,
    log: Callable[[str], Any],
    channels_last: bool,
    max_steps_this_run: int | None = None,
) -> None:
    """Train the network(s) of one experiment; write model file, loss table and curve.

    ``checkpoint_dir`` is the experiment's checkpoint root; checkpoints go to its sub-folder
    named by the config hash (``checkpoint.checkpoint_folder``).
    ``max_steps_this_run`` (testing hook) stops after that many steps of this run without
    writing outputs, as if the job had been killed. ``amp``: config ``precision`` (``pick_precision``).
    ``channels_last``: 3D weights and 5-D batches channels-last (NDHWC; ``in_layout``).
    """
    method = methods.get(settings.method)
    method.check(settings)
    data, val = load_data(method, settings, train_items, val_items)
    check_train_settings(settings.train, data.spatial)
    dev = resolve_device(device)
    precision = pick_precision(dev.type, amp)
    labels = precision_labels(dev.type, amp)
    net_meta = build_networks(method, settings, data.spatial)
    n_steps = total_steps(settings.train, len(data))
    train = {k: v for k, v in asdict(settings.train).items() if k != "checkpoint_every"}
    chash = config_hash({"method": settings.method, "variant": settings.variant, "network": net_meta["network"],
                         "train": train, "seed": settings.seed, "hf_radius": settings.hf_radius,
                         "train_items": train_items, "val_items": val_items,
                         "data": [data_fingerprint(train_items), data_fingerprint(val_items)]})
    torch.manual_seed(derive_seed(settings.seed, 0))
    layout = memory_format(channels_last)
    models = {k: in_layout(m.to(dev), layout) for k, m in method.networks_from_meta(net_meta).items()}
    state = new_state(models, settings.train, n_steps, dev, precision, method.primary_network)
    checkpoint_dir = resume(state, checkpoint_dir, chash, n_steps, log)
    name = f"{settings.method}/{settings.variant}"
    log(f"[{name}] {len(data)} training samples {data.spatial}, {len(val) if val else 0} validation; "
        f"{n_steps} steps of batch {settings.train.batch_size}; device {dev} "
        f"({labels['precision']}; forward passes {labels['forward_precision']}); "
        f"{count_parameters(models[method.primary_network])} parameters per model")
    finished = run_steps(method, settings, state, data, val, n_steps, dev, precision, chash, checkpoint_dir,
                         log, max_steps_this_run, layout)
    if not finished:
        return
    meta = {"method": settings.method, "variant": settings.variant, "spatial_dims": method.spatial_dims,
            "image_shape": list(data.spatial), "hf_radius": settings.hf_radius, **net_meta, "steps": n_steps,
            "seed": settings.seed, "config_hash": chash, "train": asdict(settings.train),
            "weights": "ema" if state.emas else "final", **labels}
    meta.update(method.finish_training(settings, state.final, val, dev, precision, log))
    write_loss_tsv(out_loss_tsv, state.history)
    plot_losses(out_loss_png, state.history, name)
    save_models(out_model, state.final, meta)
    log(f"[{name}] saved {out_model}")


def _to(t: torch.Tensor, dev: torch.device, layout: torch.memory_format) -> torch.Tensor:
    """A batch tensor on ``dev``; 5-D tensors (N, C, D, H, W) in ``layout``."""
    return t.to(dev, memory_format=layout) if t.dim() == 5 else t.to(dev)


def run_steps(method: methods.Method, settings: ExperimentSettings, state: TrainState, data: Samples,
              val: Samples | None, n_steps: int, dev: torch.device, precision: Precision, chash: str,
              checkpoint_dir: str, log: Callable[[str], Any], max_steps_this_run: int | None,
              layout: torch.memory_format = torch.contiguous_format) -> bool:
    """Run the remaining steps; False when stopped early by ``max_steps_this_run``.

    Batches are pure functions of the step: the next one is prepared (the method's CPU
    corruption, e.g. drawing masks) in a background thread while the current step runs.
    """
    s, seed, name = settings.train, settings.seed, f"{settings.method}/{settings.variant}"

    def batch_of(step: int) -> dict[str, torch.Tensor]:
        return make_batch(data, step, s, seed, lambda b, i, e: method.corrupt(settings, b, i, e))

    report_every, ran = max(1, round(n_steps / 10)), 0
    noise_gen = torch.Generator(device=dev)
    t_last, s_last = time.perf_counter(), state.step
    for m in state.models.values():
        m.train()
    with deterministic(dev.type == "cpu"), ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(batch_of, state.step) if state.step < n_steps else None
        while state.step < n_steps:
            if max_steps_this_run is not None and ran >= max_steps_this_run:
                log(f"[{name}] stopping after {ran} steps (max_steps_this_run)")
                return False
            batch = pending.result()
            if state.step + 1 < n_steps:
                pending = pool.submit(batch_of, state.step + 1)
            batch = {k: _to(t, dev, layout) for k, t in batch.items()}
            torch.manual_seed(derive_seed(seed, 1, state.step))  # dropout
            noise_gen.manual_seed(derive_seed(seed, 2, state.step))
            with precision.context(dev.type):
                losses = method.losses(settings, state.models, batch, noise_gen)
            optimise(state, losses, s, method.primary_network, name)
            state.step += 1
            ran += 1
            if state.step % report_every == 0 or state.step == n_steps:
                now = time.perf_counter()
                lr = state.optimizers[method.primary_network].param_groups[0]["lr"]
                log(f"[{name}] step {state.step}/{n_steps} loss {state.history['loss'][-1]:.4g} lr {lr:.2e} "
                    f"{(now - t_last) / max(1, state.step - s_last):.2f} s/step")
                t_last, s_last = now, state.step
            if state.step % int(s.checkpoint_every) == 0 or state.step == n_steps:
                found = {} if val is None else method.validation_losses(settings, state.final, val, dev, precision)
                state.history["val"][state.step] = found
                if found:
                    log(f"[{name}] step {state.step} " + " ".join(f"{k} {v:.4g}" for k, v in found.items()))
                save_checkpoint(checkpoint_dir, state.state_dict(chash))
    return True


def optimise(state: TrainState, losses: dict[str, torch.Tensor], s: TrainSettings, primary: str, name: str) -> None:
    """One optimiser step per network (in the order of ``losses``), EMA and loss history."""
    for k, loss in losses.items():
        if not torch.isfinite(loss):
            raise FloatingPointError(f"[{name}] non-finite loss at step {state.step + 1} (network '{k}')")
        state.optimizers[k].zero_grad(set_to_none=True)
        state.scalers[k].scale(loss).backward()
        state.scalers[k].step(state.optimizers[k])
        state.scalers[k].update()
        state.schedulers[k].step()
        if state.emas:
            ema_update(state.emas[k], state.models[k], float(s.ema), state.step, bool(s.ema_warmup))
        state.history["loss" if k == primary else f"loss_{k}"].append(loss.item())
