"""Training of the IterMask reconstruction networks (METHOD.md §4-5) with exact resume.

Every random draw of a step is a function of (seed, step): the batch order of an epoch, the
training masks (``itermask.core.masks.mask_rng(seed, sample, epoch, fixed)``), the rot90
augmentation, the input noise and dropout. Checkpoints also store all generator states, so a
killed run that resumes ends, on CPU, with exactly the weights of an uninterrupted run.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from itermask.io.atomic import save_figure, write_json, write_text
from itermask.io.device import resolve_device
from itermask.errors import ConfigError, InputError
from itermask.core.masks import mask_rng, training_mask
from itermask.core.model_input import compose_input, in_channels
from itermask.core.networks import build_network, check_divisible, count_parameters, network_settings, save_models
from itermask.io.nifti import load_array

TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "itermask3d": {
        "steps": None, "epochs": None, "batch_size": 2, "optimizer": "adam", "lr": 1e-3,
        "weight_decay": 0.0, "lr_drop_at": 0.6, "lr_after_drop": 1e-4, "rot90_p": 0.1,
        "rot90_axes": [0, 2], "fixed_masks": False, "checkpoint_every": 50,
        "ema": None, "ema_warmup": True,
    },
    "itermask2": {
        "steps": None, "epochs": None, "batch_size": 32, "optimizer": "adamw", "lr": 1e-4,
        "weight_decay": 0.0, "lr_drop_at": None, "lr_after_drop": None, "rot90_p": 0.0,
        "rot90_axes": [0, 1], "fixed_masks": False, "checkpoint_every": 1000,
        "ema": 0.9999, "ema_warmup": True,
    },
}
CKPT_LATEST = "latest.pt"
CKPT_PREVIOUS = "previous.pt"


# --------------------------------------------------------------------------------------
# Settings, device and precision


def train_settings(method: str, train_cfg: dict) -> dict[str, Any]:
    """Training settings with the method's defaults filled in; unknown keys raise ConfigError."""
    if method not in TRAIN_DEFAULTS:
        raise ConfigError(f"unknown method '{method}', expected one of {sorted(TRAIN_DEFAULTS)}")
    unknown = sorted(set(train_cfg) - set(TRAIN_DEFAULTS[method]))
    if unknown:
        raise ConfigError(f"unknown train keys for {method}: {unknown} (known: {sorted(TRAIN_DEFAULTS[method])})")
    s = {**TRAIN_DEFAULTS[method], **train_cfg}
    if (s["steps"] is None) == (s["epochs"] is None):
        raise ConfigError("train: set exactly one of 'steps' and 'epochs' (set the other to null)")
    if s["optimizer"] not in ("adam", "adamw"):
        raise ConfigError(f"train.optimizer must be 'adam' or 'adamw', got '{s['optimizer']}'")
    if int(s["batch_size"]) < 1 or int(s["checkpoint_every"]) < 1:
        raise ConfigError("train.batch_size and train.checkpoint_every must be >= 1")
    if s["lr_drop_at"] is not None and s["lr_after_drop"] is None:
        raise ConfigError("train.lr_drop_at needs train.lr_after_drop")
    if s["ema"] is not None and not 0.0 <= float(s["ema"]) < 1.0:
        raise ConfigError(f"train.ema must be in [0, 1), got {s['ema']}")
    return s


def total_steps(settings: dict, n_train: int) -> int:
    """Number of optimiser steps: `steps`, or `epochs` * ceil(n_train / batch_size)."""
    if settings["steps"] is not None:
        return int(settings["steps"])
    return int(settings["epochs"]) * math.ceil(n_train / int(settings["batch_size"]))


@dataclass(frozen=True)
class Precision:
    """Mixed-precision choice: autocast on/off, its dtype, and whether a GradScaler is needed."""

    autocast: bool
    dtype: torch.dtype
    scaler: bool


def pick_precision(device_type: str, bf16_supported: bool | None = None) -> Precision:
    """Autocast (bf16 where supported, else fp16 + GradScaler) on CUDA; plain fp32 elsewhere."""
    if device_type != "cuda":
        return Precision(False, torch.float32, False)
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return Precision(True, torch.bfloat16, False) if bf16_supported else Precision(True, torch.float16, True)


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed that is a pure function of (seed, *keys)."""
    state = np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


@contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """Use deterministic algorithms (CPU) inside the block; restore the previous setting after."""
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


# --------------------------------------------------------------------------------------
# Data


@dataclass
class Samples:
    """Training/validation samples in memory: image, hf (n, 1, *spatial) float32; brain (n, *spatial)."""

    image: torch.Tensor
    hf: torch.Tensor
    brain: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.image.shape[2:])


def load_volumes(items: list[dict]) -> Samples:
    """Load 3D items {"subject", "image", "hf", "brain"}; all must share one shape."""
    images, hfs, brains, names = [], [], [], []
    for item in items:
        subject = str(item.get("subject"))
        arrays = {}
        for key in ("image", "hf", "brain"):
            if key not in item:
                raise InputError(f"training item lacks '{key}'", subject=subject)
            path = Path(item[key])
            if not path.exists():
                raise InputError(f"{key} file does not exist", path=path, subject=subject)
            arrays[key] = load_array(path)[0]
            if not np.all(np.isfinite(arrays[key])):
                raise InputError(f"{key} contains NaN/Inf", path=path, subject=subject)
        shape = arrays["image"].shape
        for key in ("hf", "brain"):
            if arrays[key].shape != shape:
                raise InputError(f"{key} shape {arrays[key].shape} differs from image shape {shape}",
                                 path=item[key], subject=subject)
        if images and shape != images[0].shape:
            raise InputError(f"shape {shape} differs from the first subject's {images[0].shape}",
                             path=item["image"], subject=subject)
        brain = arrays["brain"] > 0.5
        if not brain.any():
            raise InputError("brain mask is empty", path=item["brain"], subject=subject)
        images.append(arrays["image"])
        hfs.append(arrays["hf"])
        brains.append(brain)
        names.append(subject)
    if not names:
        raise InputError("no 3D items given")
    return Samples(
        torch.from_numpy(np.stack(images)[:, None].astype(np.float32)),
        torch.from_numpy(np.stack(hfs)[:, None].astype(np.float32)),
        np.stack(brains), names,
    )


def load_slices(items: list[dict]) -> Samples:
    """Load 2D items {"subject", "slices": npz}; every slice with brain pixels is a sample."""
    images, hfs, brains, names = [], [], [], []
    for item in items:
        subject = str(item.get("subject"))
        path = Path(item.get("slices", ""))
        if not path.is_file():
            raise InputError("slices file does not exist", path=path, subject=subject)
        try:
            with np.load(path, allow_pickle=False) as z:
                arr = {k: np.asarray(z[k]) for k in ("image", "hf", "brain")}
                index = np.asarray(z["index"]) if "index" in z.files else np.arange(len(arr["image"]))
        except KeyError as exc:
            raise InputError(f"slices file lacks key {exc}", path=path, subject=subject) from exc
        except Exception as exc:
            raise InputError(f"cannot read slices file ({type(exc).__name__}: {exc})", path=path,
                             subject=subject) from exc
        shape = arr["image"].shape
        if len(shape) != 3 or arr["hf"].shape != shape or arr["brain"].shape != shape:
            raise InputError(f"image/hf/brain must be (n, H, W) of one shape, got "
                             f"{shape}, {arr['hf'].shape}, {arr['brain'].shape}", path=path, subject=subject)
        if images and shape[1:] != images[0].shape[1:]:
            raise InputError(f"slice size {shape[1:]} differs from {images[0].shape[1:]}", path=path, subject=subject)
        if not (np.all(np.isfinite(arr["image"])) and np.all(np.isfinite(arr["hf"]))):
            raise InputError("slices contain NaN/Inf", path=path, subject=subject)
        brain = arr["brain"].astype(bool)
        keep = brain.reshape(len(brain), -1).any(axis=1)
        images.append(arr["image"][keep])
        hfs.append(arr["hf"][keep])
        brains.append(brain[keep])
        names += [f"{subject}:{int(i)}" for i in index[keep]]
    if not names:
        raise InputError("no 2D slices with brain pixels in the given items")
    return Samples(
        torch.from_numpy(np.concatenate(images)[:, None].astype(np.float32)),
        torch.from_numpy(np.concatenate(hfs)[:, None].astype(np.float32)),
        np.concatenate(brains), names,
    )


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """Sample order of one epoch (a permutation that depends only on seed and epoch)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 7, int(epoch)])).permutation(n)


def make_batch(
    data: Samples, step: int, batch_size: int, seed: int, settings: dict
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, hf, mask) CPU tensors (B, 1, *spatial) of training step `step` (0-based)."""
    n = len(data)
    per_epoch = math.ceil(n / batch_size)
    epoch, pos = divmod(step, per_epoch)
    idx = epoch_order(seed, epoch, n)[pos * batch_size:(pos + 1) * batch_size]
    fixed = bool(settings["fixed_masks"])
    masks = [training_mask(data.brain[i], mask_rng(seed, int(i), epoch, fixed)) & data.brain[i] for i in idx]
    x, hf = data.image[idx], data.hf[idx]
    mask = torch.from_numpy(np.stack(masks)[:, None])
    p = float(settings["rot90_p"])
    if p > 0:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 11, int(step)]))
        dims = [1 + int(a) for a in settings["rot90_axes"]]  # axes of one sample (1, *spatial)
        rotate = rng.random(len(idx)) < p
        if rotate.any():
            x, hf, mask = x.clone(), hf.clone(), mask.clone()
            for b in np.flatnonzero(rotate):
                for t in (x, hf, mask):
                    t[b] = torch.rot90(t[b], 1, dims)
    return x, hf, mask


# --------------------------------------------------------------------------------------
# EMA, checkpoints


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int, warmup: bool) -> None:
    """EMA of the parameters (buffers copied); with warmup decay = min(decay, (1+t)/(10+t))."""
    d = min(decay, (1 + step) / (10 + step)) if warmup else decay
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(d).add_(p.detach(), alpha=1 - d)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def rng_states() -> dict[str, Any]:
    """States of the global generators (torch CPU/CUDA, numpy legacy, python random)."""
    return {
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch_cpu"])
    if states["torch_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch_cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def save_checkpoint(checkpoint_dir: str | Path, state: dict) -> None:
    """Write `latest.pt` atomically, keeping the former latest as `previous.pt`."""
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    latest = folder / CKPT_LATEST
    tmp = folder / f".{CKPT_LATEST}.{os.getpid()}.tmp"
    try:
        torch.save(state, tmp)
        if latest.exists():
            os.replace(latest, folder / CKPT_PREVIOUS)
        os.replace(tmp, latest)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(checkpoint_dir: str | Path, config_hash: str, log: Callable[[str], None]) -> dict | None:
    """Newest readable checkpoint with `config_hash`, or None (mismatches are logged)."""
    for name in (CKPT_LATEST, CKPT_PREVIOUS):
        path = Path(checkpoint_dir) / name
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a truncated file from a crash: try the previous one
            log(f"checkpoint {path} unreadable ({type(exc).__name__}); trying the previous one")
            continue
        if state.get("config_hash") != config_hash:
            log(f"checkpoint {path} belongs to another configuration; starting fresh")
            return None
        return state
    return None


def config_hash(method: str, variant: str, network: dict, train: dict, seed: int, hf_radius: int,
                train_items: list[dict], val_items: list[dict]) -> str:
    """SHA-256 of everything that determines the training trajectory (not checkpoint_every)."""
    train = {k: v for k, v in train.items() if k != "checkpoint_every"}
    blob = json.dumps(
        {"method": method, "variant": variant, "network": network, "train": train, "seed": seed,
         "hf_radius": hf_radius, "train_items": train_items, "val_items": val_items},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------------------
# Evaluation on validation data


@torch.no_grad()
def evaluate(
    model: nn.Module, variant: str, data: Samples, seed: int, batch_size: int, device: torch.device,
    precision: Precision, collect_mask_errors: bool = False,
) -> tuple[float, np.ndarray | None]:
    """Whole-image MSE on `data` with fixed seeded masks and noise (model in eval mode).

    With `collect_mask_errors`, also returns the squared errors of all masked pixels/voxels.
    """
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, 3))
    mask_seed = derive_seed(seed, 4) % (2**32)
    total, count, errors = 0.0, 0, []
    try:
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(start + batch_size, len(data)))
            masks = [training_mask(data.brain[i], mask_rng(mask_seed, int(i), 0, True)) & data.brain[i] for i in idx]
            mask = torch.from_numpy(np.stack(masks)[:, None]).to(device)
            x, hf = data.image[idx].to(device), data.hf[idx].to(device)
            inp = compose_input(x, hf, mask, variant, generator=gen)
            with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.autocast):
                out = model(inp)
            err = (out.float() - x) ** 2
            total += float(err.sum())
            count += err.numel()
            if collect_mask_errors:
                errors.append(err[mask].cpu().numpy())
    finally:
        model.train(was_training)
    found = np.concatenate(errors) if collect_mask_errors else None
    return total / count, found


def calibration_tau(errors: np.ndarray, percentile: float) -> float:
    """IterMask2's tau: the `percentile` of squared errors inside training masks (METHOD.md §6)."""
    if errors.size == 0:
        raise InputError("no masked validation pixels to calibrate tau")
    return float(np.percentile(errors, percentile))


CALIBRATION_PERCENTILES = tuple(range(1, 100))


def calibration_quantiles(errors: np.ndarray) -> list[float]:
    """The same quantiles as `calibration_tau` at every integer percentile 1..99, so inference
    can use another tau percentile without retraining (``itermask.inference.stage``)."""
    if errors.size == 0:
        raise InputError("no masked validation pixels to calibrate tau")
    return [float(q) for q in np.percentile(errors, CALIBRATION_PERCENTILES)]


def recompute_hf(data: Samples, radius: int, device: torch.device, batch_size: int | None = None) -> Samples:
    """`data` with its HF images recomputed from the images at `radius` (batched, on `device`;
    default batches: 4 volumes or 256 slices)."""
    from itermask.core.highfreq import high_frequency_torch

    ndim = len(data.spatial)
    batch_size = batch_size or (4 if ndim == 3 else 256)
    chunks = [high_frequency_torch(data.image[i:i + batch_size].to(device), int(radius), ndim=ndim).cpu()
              for i in range(0, len(data), batch_size)]
    return Samples(data.image, torch.cat(chunks), data.brain, data.names)


# --------------------------------------------------------------------------------------
# Outputs


def write_loss_tsv(path: str | Path, history: dict) -> None:
    """One row per step: step, loss(es) and the validation loss(es) at checkpoint steps."""
    keys = [k for k in ("loss", "loss_first") if k in history]
    val_keys = sorted({k for v in history["val"].values() for k in v})
    lines = ["\t".join(["step", *keys, *val_keys])]
    for i in range(len(history["loss"])):
        val = history["val"].get(i + 1, {})
        row = [str(i + 1), *(f"{history[k][i]:.6g}" for k in keys),
               *(f"{val[k]:.6g}" if k in val else "" for k in val_keys)]
        lines.append("\t".join(row))
    write_text(path, "\n".join(lines) + "\n")


def plot_losses(path: str | Path, history: dict, title: str) -> None:
    """Training loss per step (and validation loss at checkpoints), log scale."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for key, colour in (("loss", "tab:blue"), ("loss_first", "tab:orange")):
        if key in history and history[key]:
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], lw=0.8, color=colour, alpha=0.8,
                    label=key.replace("loss", "train").replace("_first", " (first model)"))
    for key, colour in (("val_loss", "tab:red"), ("val_loss_first", "tab:green")):
        pts = sorted((s, v[key]) for s, v in history["val"].items() if key in v)
        if pts:
            ax.plot(*zip(*pts), "o-", color=colour, ms=3,
                    label=key.replace("val_loss", "validation").replace("_first", " (first model)"))
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE")
    ax.set_title(title)
    ax.legend()
    save_figure(fig, path, dpi=100)


# --------------------------------------------------------------------------------------
# Stage function


def train_experiment(
    method: str,
    variant: str,
    train_items: list[dict],
    val_items: list[dict],
    cfg: dict,
    *,
    out_model: str,
    out_loss_tsv: str,
    out_loss_png: str,
    checkpoint_dir: str,
    device: str = "auto",
    seed: int = 0,
    hf_radius: int = 15,
    out_calibration: str | None = None,
    log: Callable[[str], None] = print,
    max_steps_this_run: int | None = None,
) -> None:
    """Train the model(s) of one experiment and write model, loss table/plot (and calibration).

    `hf_radius` is the radius of the HF images in the items (preprocessing). The model's
    radius is ``cfg["hf_radius"]`` (default: the same); when it differs, the HF images are
    recomputed from the images at the model's radius (``highfreq.high_frequency_torch``,
    batched on the device) and the stored ones are not used. The model meta records the
    model's radius. IterMask2 calibration stores tau at ``infer.tau_percentile`` and the
    validation error quantiles at every integer percentile 1..99.

    `max_steps_this_run` (testing hook) stops after that many steps of this run without
    writing outputs, as if the job had been killed.
    """
    if method not in ("itermask3d", "itermask2"):
        raise ConfigError(f"unknown method '{method}'")
    if int(seed) < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    in_channels(variant)  # validates the variant
    settings = train_settings(method, cfg.get("train", {}))
    data = load_volumes(train_items) if method == "itermask3d" else load_slices(train_items)
    val = (load_volumes(val_items) if method == "itermask3d" else load_slices(val_items)) if val_items else None
    if method == "itermask2" and val is None:
        raise InputError("itermask2 needs validation slices (healthy) to calibrate tau; none were given")
    if val is not None and val.spatial != data.spatial:
        raise InputError(f"validation size {val.spatial} differs from training size {data.spatial}")
    model_radius = int(cfg.get("hf_radius", hf_radius))
    dev = resolve_device(device)
    if model_radius != int(hf_radius):
        if model_radius < 0:
            raise ConfigError(f"hf_radius must be >= 0, got {model_radius}")
        data = recompute_hf(data, model_radius, dev)
        val = recompute_hf(val, model_radius, dev) if val is not None else None
        log(f"HF images recomputed at radius {model_radius} (stored inputs: radius {hf_radius})")
    net_cfg = dict(cfg.get("network", {}))
    if method == "itermask2":
        if data.spatial[0] != data.spatial[1]:
            raise InputError(f"2D slices must be square, got {data.spatial}")
        net_cfg["image_size"] = int(data.spatial[0])
    net_cfg = network_settings(method, net_cfg)
    check_divisible_input(data.spatial, len(net_cfg["channels"]))
    if float(settings["rot90_p"]) > 0:
        sizes = {data.spatial[int(a)] for a in settings["rot90_axes"]}
        if len(settings["rot90_axes"]) != 2 or len(sizes) != 1:
            raise ConfigError(f"train.rot90_axes {settings['rot90_axes']} must name 2 axes of equal size "
                              f"(image size {data.spatial}); or set train.rot90_p: 0")

    variants = {"masked": variant}
    if method == "itermask2":
        variants = {"first": "hf_only", "masked": variant}
    n_steps = total_steps(settings, len(data))
    batch_size = int(settings["batch_size"])
    every = int(settings["checkpoint_every"])
    chash = config_hash(method, variant, net_cfg, settings, int(seed), model_radius,
                        train_items, val_items)
    precision = pick_precision(dev.type)
    infer_cfg = cfg.get("infer", {}) or {}
    eval_batch = int(infer_cfg.get("batch_size", batch_size))

    torch.manual_seed(derive_seed(seed, 0))
    models = {k: build_network(method, in_channels(v), net_cfg).to(dev) for k, v in variants.items()}
    emas = {k: copy.deepcopy(m).eval() for k, m in models.items()} if settings["ema"] is not None else {}
    opt_cls = torch.optim.Adam if settings["optimizer"] == "adam" else torch.optim.AdamW
    optimizers = {k: opt_cls(m.parameters(), lr=float(settings["lr"]), weight_decay=float(settings["weight_decay"]))
                  for k, m in models.items()}
    milestones = [] if settings["lr_drop_at"] is None else [int(round(float(settings["lr_drop_at"]) * n_steps))]
    gamma = 1.0 if settings["lr_drop_at"] is None else float(settings["lr_after_drop"]) / float(settings["lr"])
    schedulers = {k: torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma) for k, o in optimizers.items()}
    scalers = {k: torch.amp.GradScaler(dev.type, enabled=precision.scaler) for k in models}
    history: dict[str, Any] = {"loss": [], "val": {}}
    if method == "itermask2":
        history["loss_first"] = []
    step = 0

    ckpt = load_checkpoint(checkpoint_dir, chash, log)
    if ckpt is not None:
        for k in models:
            models[k].load_state_dict(ckpt["models"][k])
            if emas:
                emas[k].load_state_dict(ckpt["ema"][k])
            optimizers[k].load_state_dict(ckpt["optimizers"][k])
            schedulers[k].load_state_dict(ckpt["schedulers"][k])
            scalers[k].load_state_dict(ckpt["scalers"][k])
        step, history = int(ckpt["step"]), ckpt["history"]
        set_rng_states(ckpt["rng"])
        log(f"resuming from checkpoint at step {step}/{n_steps}")

    name = f"{method}/{variant}"
    log(f"[{name}] {len(data)} training samples {data.spatial}, {len(val) if val else 0} validation; "
        f"{n_steps} steps of batch {batch_size}; device {dev} "
        f"({'autocast ' + str(precision.dtype).replace('torch.', '') if precision.autocast else 'fp32'}); "
        f"{count_parameters(models['masked'])} parameters per model")

    def eval_models() -> dict[str, float]:
        out: dict[str, float] = {}
        if val is None:
            return out
        for k, v in variants.items():
            m = emas[k] if emas else models[k]
            key = "val_loss_first" if k == "first" else "val_loss"
            out[key] = evaluate(m, v, val, seed, eval_batch, dev, precision)[0]
        return out

    report_every = max(1, round(n_steps / 10))
    noise_gen = torch.Generator(device=dev)
    ran = 0
    t_last, s_last = time.perf_counter(), step
    for m in models.values():
        m.train()
    # batches are pure functions of the step: the next one is prepared (masks drawn on the
    # CPU) in a background thread while the current step runs
    with deterministic(dev.type == "cpu"), ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(make_batch, data, step, batch_size, seed, settings) if step < n_steps else None
        while step < n_steps:
            if max_steps_this_run is not None and ran >= max_steps_this_run:
                log(f"[{name}] stopping after {ran} steps (max_steps_this_run)")
                return
            x, hf, mask = pending.result()
            if step + 1 < n_steps:
                pending = pool.submit(make_batch, data, step + 1, batch_size, seed, settings)
            x, hf, mask = x.to(dev), hf.to(dev), mask.to(dev)
            torch.manual_seed(derive_seed(seed, 1, step))  # dropout
            noise_gen.manual_seed(derive_seed(seed, 2, step))
            noise = torch.randn(x.shape, generator=noise_gen, device=dev, dtype=x.dtype)
            for k, v in variants.items():
                inp = compose_input(x, hf, mask, v, noise=noise)
                with torch.autocast(dev.type, dtype=precision.dtype, enabled=precision.autocast):
                    out = models[k](inp)
                loss = F.mse_loss(out.float(), x)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"[{name}] non-finite loss at step {step + 1} (model '{k}')")
                optimizers[k].zero_grad(set_to_none=True)
                scalers[k].scale(loss).backward()
                scalers[k].step(optimizers[k])
                scalers[k].update()
                schedulers[k].step()
                if emas:
                    ema_update(emas[k], models[k], float(settings["ema"]), step, bool(settings["ema_warmup"]))
                history["loss_first" if k == "first" else "loss"].append(loss.item())
            step += 1
            ran += 1
            if step % report_every == 0 or step == n_steps:
                now = time.perf_counter()
                lr = optimizers["masked"].param_groups[0]["lr"]
                log(f"[{name}] step {step}/{n_steps} loss {history['loss'][-1]:.4g} lr {lr:.2e} "
                    f"{(now - t_last) / max(1, step - s_last):.2f} s/step")
                t_last, s_last = now, step
            if step % every == 0 or step == n_steps:
                history["val"][step] = eval_models()
                if history["val"][step]:
                    log(f"[{name}] step {step} " + " ".join(f"{k} {v:.4g}" for k, v in history["val"][step].items()))
                save_checkpoint(checkpoint_dir, {
                    "config_hash": chash, "step": step, "history": history, "rng": rng_states(),
                    "models": {k: m.state_dict() for k, m in models.items()},
                    "ema": {k: m.state_dict() for k, m in emas.items()},
                    "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                    "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                    "scalers": {k: s.state_dict() for k, s in scalers.items()},
                })

        final = emas if emas else models
        meta: dict[str, Any] = {
            "method": method, "variant": variant, "spatial_dims": 3 if method == "itermask3d" else 2,
            "image_shape": list(data.spatial), "hf_radius": model_radius, "network": net_cfg,
            "in_channels": {k: in_channels(v) for k, v in variants.items()}, "variants": variants,
            "steps": n_steps, "seed": int(seed), "config_hash": chash, "train": settings,
            "weights": "ema" if emas else "final",
        }
        if method == "itermask2":
            pct = float(infer_cfg.get("tau_percentile", 80))
            _, errs = evaluate(final["masked"], variant, val, seed, eval_batch, dev, precision, True)
            tau = calibration_tau(errs, pct)
            meta["calibration"] = {"tau": tau, "percentile": pct, "n_slices": len(val), "n_pixels": int(errs.size),
                                   "seed": int(seed), "quantile_percentiles": list(CALIBRATION_PERCENTILES),
                                   "quantiles": calibration_quantiles(errs)}
            log(f"[{name}] calibration tau = {tau:.4g} ({pct:g}th percentile of {errs.size} masked pixels)")
            if out_calibration is not None:
                write_json(out_calibration, meta["calibration"])
    write_loss_tsv(out_loss_tsv, history)
    plot_losses(out_loss_png, history, name)
    save_models(out_model, final, meta)
    log(f"[{name}] saved {out_model}")


def check_divisible_input(spatial: tuple[int, ...], n_levels: int) -> None:
    """InputError unless the image size suits a UNet with `n_levels` widths."""
    try:
        check_divisible(spatial, 2 ** (n_levels - 1))
    except ValueError as exc:
        raise InputError(f"training images do not fit the network: {exc}") from None
