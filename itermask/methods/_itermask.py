"""What IterMask3D and IterMask2 share: the masked-reconstruction objective (METHOD.md §4-5).

A training batch is corrupted by random Gaussian-blob masks inside the brain
(``itermask.core.masks``): the network sees the image with N(0, 1) noise inside the mask
(and, unless ``no_freq``, the high-frequency image) and is trained with the whole-image MSE.
Each network of a method has an *input variant* (``itermask.core.model_input``): IterMask3D
trains one (``masked``), IterMask2 two (``first``: HF only; ``masked``).

Both calibrate a threshold on normal data when training ends (`calibrate`): the
``tau_percentile``-th percentile of the masked network's squared errors inside seeded training
masks on the healthy validation scans (IterMask2's tau; IterMask3D's fixed tau, METHOD.md §6).

``-spatial`` (variant ``no_spatial``, both 2D and 3D; METHOD.md §6 and IterMask3D Table 5): one
reconstruction from the high-frequency image alone, no masked iterations, thresholded once at
the calibrated tau (`single_step`).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from itermask.errors import ConfigError, InputError

VARIANTS = ("full", "no_freq", "no_spatial")
#: validation-error quantiles stored at these percentiles, so tau_percentile can change after training
CALIBRATION_PERCENTILES = tuple(range(1, 100))


def describe_fixed_tau(cfg: Mapping[str, Any]) -> str:
    """Caption text of a fixed tau: the configured value, else the calibration (`calibrate`)."""
    if cfg.get("fixed_tau") is not None:
        return f"τ = {float(cfg['fixed_tau']):g} (config)"
    return f"τ = the {float(cfg['tau_percentile']):g}th percentile of the healthy validation errors inside training masks"


def chooser(cfg: Mapping[str, Any], percents: Sequence[float] | None = None) -> Any:
    """curve -> (tau, ThresholdFit): the subject-specific rule (``core.threshold.subject_threshold``)
    with the experiment's gamma, y_limit, r2_min, k_fallback, curve_scale_percent; ``percents``:
    the phase-A schedule the curve was recorded on (default: the experiment's)."""
    from itermask.core.threshold import subject_threshold

    t = np.asarray(phase_a_schedule(cfg) if percents is None else percents, dtype=float)
    scale_at = cfg["curve_scale_percent"]
    options = {"gamma": float(cfg["gamma"]), "y_limit": float(cfg["y_limit"]), "r2_min": float(cfg["r2_min"]),
               "no_exceed": cfg["k_fallback"], "scale_at": None if scale_at is None else float(scale_at)}

    def choose(curve: np.ndarray) -> tuple[float, Any]:
        fit = subject_threshold(curve, t=t, **options)
        return fit.tau, fit

    return choose


def describe_threshold(cfg: Mapping[str, Any]) -> str:
    """Caption text of where an IterMask run's tau comes from (METHOD.md §6), from its ``infer``."""
    if cfg["threshold"] == "fixed":
        return "fixed " + describe_fixed_tau(cfg)
    steps = f"{float(cfg['step_percent']):g} % steps"
    if cfg["fine_from_percent"] is not None:
        steps += f", 1 % steps from {float(cfg['fine_from_percent']):g} %"
    if cfg["curve_scale_percent"] is not None:
        steps += (f"; the curve divided by its value at {float(cfg['curve_scale_percent']):g} % "
                  "(γ and y-limit in those units)")
    return (f"subject-specific τ from phase A in {steps}: tangent fit below y-limit {float(cfg['y_limit']):g} "
            f"(derivative branch if R² < {float(cfg['r2_min']):g}), γ {float(cfg['gamma']):g}, "
            f"k* fallback '{cfg['k_fallback']}'")


def describe_stop(cfg: Mapping[str, Any]) -> str:
    """Caption text of when the iterative mask stops."""
    return f"stop at < {100 * float(cfg['tol']):g} % mask change or {int(cfg['max_iterations'])} iterations"


def describe_input(settings: Any) -> str:
    """Caption text of the model's conditioning input (the HF radius, or none for -freq)."""
    return "no HF input (-freq)" if settings.variant == "no_freq" else f"HF radius {settings.hf_radius}"


def describe_single_step(cfg: Mapping[str, Any]) -> str:
    """Caption text of -spatial: one step, thresholded at the calibrated (or configured) tau."""
    return f"one reconstruction from the HF image alone (-spatial), thresholded at {describe_fixed_tau(cfg)}"


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, got '{variant}'")


def input_variant(variant: str) -> str:
    """Input of the masked network: ``no_freq`` models see no HF; ``no_spatial`` uses the full model."""
    return "no_freq" if variant == "no_freq" else "full"


def single_step(variant: str) -> bool:
    """Is the variant the single-reconstruction ``-spatial`` ablation?"""
    return variant == "no_spatial"


def check_model_variant(variant: str, meta: Mapping[str, Any], model_path: str) -> None:
    """InputError when an experiment's variant cannot use the model (no_freq vs HF models)."""
    trained = meta.get("variant")
    if (variant == "no_freq") != (trained == "no_freq"):
        raise InputError(f"experiment variant '{variant}' needs a {'no_freq' if variant == 'no_freq' else 'full'} "
                         f"model, but the model was trained as '{trained}'", path=model_path)


def corrupt(brains: np.ndarray, sample_ids: np.ndarray, epoch: int, seed: int, fixed: bool) -> dict[str, Any]:
    """Training masks of a batch, (B, 1, *spatial) bool, drawn per (seed, sample, epoch)."""
    import torch

    from itermask.core.masks import mask_rng, training_mask

    masks = [training_mask(b, mask_rng(seed, int(i), epoch, fixed)) & b for b, i in zip(brains, sample_ids)]
    return {"mask": torch.from_numpy(np.stack(masks)[:, None])}


def losses(networks: Mapping[str, Any], variants: Mapping[str, str], batch: Mapping[str, Any], generator: Any) -> dict:
    """Whole-image MSE of each network on the masked batch (one noise draw shared by all)."""
    import torch
    import torch.nn.functional as F

    from itermask.core.model_input import compose_input

    x, mask = batch["image"], batch["mask"]
    hf = batch.get("hf")
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    out = {}
    for k, variant in variants.items():
        recon = networks[k](compose_input(x, hf, mask, variant, noise=noise))
        out[k] = F.mse_loss(recon.float(), x)
    return out


def validation_errors(model: Any, variant: str, data: Any, seed: int, batch_size: int, device: Any,
                      precision: Any, collect_mask_errors: bool = False,
                      as_inference: bool = False) -> tuple[float, np.ndarray | None]:
    """Whole-image MSE on ``data`` with fixed seeded masks and noise (model in eval mode), at
    the training steps' precision or, ``as_inference`` (calibration), at inference's.

    With ``collect_mask_errors``, also the squared errors of all masked pixels/voxels.
    """
    import torch

    from itermask.core.masks import mask_rng, training_mask
    from itermask.core.model_input import compose_input
    from itermask.io.seeds import derive_seed

    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, 3))
    mask_seed = derive_seed(seed, 4) % (2**32)
    total, count, errors = 0.0, 0, []
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                idx = np.arange(start, min(start + batch_size, len(data)))
                masks = [training_mask(data.brain[i], mask_rng(mask_seed, int(i), 0, True)) & data.brain[i]
                         for i in idx]
                mask = torch.from_numpy(np.stack(masks)[:, None]).to(device)
                x = data.image[idx].to(device)
                hf = None if data.hf is None else data.hf[idx].to(device)
                inp = compose_input(x, hf, mask, variant, generator=gen)
                with (precision.forward_context if as_inference else precision.context)(device.type):
                    out = model(inp)
                err = (out.float() - x) ** 2
                total += float(err.sum())
                count += err.numel()
                if collect_mask_errors:
                    errors.append(err[mask].cpu().numpy())
    finally:
        model.train(was_training)
    return total / count, (np.concatenate(errors) if collect_mask_errors else None)


def validation_losses(networks: Mapping[str, Any], variants: Mapping[str, str], val: Any, seed: int,
                      batch_size: int, device: Any, precision: Any, primary: str) -> dict[str, float]:
    """``val_loss`` (primary network) and ``val_loss_<name>`` (others), in network order."""
    return {("val_loss" if k == primary else f"val_loss_{k}"):
            validation_errors(networks[k], v, val, seed, batch_size, device, precision)[0]
            for k, v in variants.items()}


def calibrate(name: str, settings: Any, model: Any, variant: str, val: Any, device: Any, precision: Any,
              log: Any) -> dict[str, Any]:
    """``{"calibration": ...}`` for the model meta: tau = the ``tau_percentile``-th percentile of
    ``model``'s squared validation errors inside the seeded training masks, plus the quantile
    at every integer percentile (another tau_percentile then needs no retraining)."""
    pct = float(settings.infer["tau_percentile"])
    _, errs = validation_errors(model, variant, val, settings.seed, int(settings.infer["batch_size"]), device,
                                precision, True, as_inference=True)
    if errs.size == 0:
        raise InputError("no masked validation voxels to calibrate tau", dataset=settings.dataset)
    tau = float(np.percentile(errs, pct))
    log(f"[{name}/{settings.variant}] calibration tau = {tau:.4g} ({pct:g}th percentile of "
        f"{errs.size} masked validation voxels)")
    return {"calibration": {"tau": tau, "percentile": pct, "n_samples": len(val), "n_voxels": int(errs.size),
                            "seed": settings.seed, "quantile_percentiles": list(CALIBRATION_PERCENTILES),
                            "quantiles": [float(q) for q in np.percentile(errs, CALIBRATION_PERCENTILES)]}}


def phase_a_schedule(cfg: Mapping[str, Any]) -> tuple[float, ...]:
    """Phase-A percents of ``infer.step_percent`` and ``infer.fine_from_percent``
    (``phase_a_percents``; ConfigError when they do not fit)."""
    from itermask.core.iterative_mask_3d import phase_a_percents

    try:
        return phase_a_percents(float(cfg["step_percent"]), fine_from=cfg["fine_from_percent"])
    except ValueError as exc:
        raise ConfigError(f"infer: {exc}") from exc
