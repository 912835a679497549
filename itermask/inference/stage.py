"""Inference stage (METHOD.md §6): IterMask3D, IterMask2 (2D slices and slice-wise on volumes),
and the human-in-the-loop re-threshold (the fixed tau is ``calibration.fixed_tau_from_results``).

Three kinds of conditions, chosen by the model's method and the condition's inputs:
- ``3d``: IterMask3D on a preprocessed volume (image, hf, brain NIfTI).
- ``slicewise``: an IterMask2 model on every axial slice with brain of a volume: the volume
  is scaled (``slices2d.scale_for_2d``), the slices resized to the model's size, HF recomputed
  on the resized slices, results resized back to the volume grid. Reconstruction and error
  are in the 2D model's scaled units (bg -3, brain p90 +3); ``input2d.nii.gz`` holds the
  scaled input on the volume grid.
- ``2d``: an IterMask2 model on the slices of a ``*_slices2d.npz`` file; outputs are NIfTI of
  shape (H, W, n) with an identity affine and the axial indices in result.json.

Detection scores (result.json ``scores``): ``mask_size_fraction`` = final mask voxels /
brain voxels, ``mask_size_voxels``, ``brain_voxels``, ``mean_error`` = mean error over
brain voxels; ``score`` is the one named by cfg ``score`` (mask_size -> the fraction).

IterMask2's tau: the model's calibration tau (``meta["calibration"]["tau"]``, the validation
error quantile at the percentile training was configured with). When cfg ``tau_percentile``
names another percentile, tau is the validation error quantile at that percentile, read from
the quantiles training stores at every integer percentile 1..99
(``meta["calibration"]["quantiles"]``): a tau-percentile sweep needs no retraining. A model
without them (trained before they were stored) raises InputError for another percentile.

High-frequency radius: cfg ``hf_radius`` (set by the workflow only when the experiment's
radius differs from that of the preprocessed HF inputs) makes inference recompute the HF
images of 3D volumes and 2D slice files from their images at that radius, which must be the
model's (``meta["hf_radius"]``); result.json records ``hf_radius`` and ``hf_recomputed``.
Slice-wise runs always compute HF at the model's radius.
"""
from __future__ import annotations

import math
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from itermask.io.atomic import atomic_dir, save_figure, write_json
from itermask.io.device import resolve_device
from itermask.errors import ConfigError, InputError
from itermask.core.iterate import Result2D, Result3D, phase_a_percents, run_itermask2, run_itermask3d
from itermask.io.nifti import check_same_grid, load_nifti, save_nifti

SPATIAL_DIVISOR_3D = 16  # four stride-2 levels of the 3D UNet


# ----------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------
def condition_seed(seed: int, subject_dir: str, condition: str, extra: str = "") -> int:
    """Stable per-condition seed (independent of batch composition and Python's hash salt)."""
    return int(seed) * 1_000_003 + zlib.crc32(f"{subject_dir}|{condition}|{extra}".encode())


def _load_models(model_path: str, device: torch.device) -> tuple[dict[str, torch.nn.Module], dict]:
    from itermask.core.networks import load_models

    return load_models(model_path, device)


def _finite(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, numpy scalars/arrays become Python."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def detection_scores(error: np.ndarray, mask: np.ndarray, brain: np.ndarray, score: str) -> dict[str, Any]:
    """Detection scores of one scan (see module docstring); ``score`` in {mask_size, mean_error}."""
    brain = brain.astype(bool)
    n_brain = int(brain.sum())
    n_mask = int((mask.astype(bool) & brain).sum())
    scores = {
        "mask_size_fraction": n_mask / n_brain if n_brain else 0.0,
        "mask_size_voxels": n_mask,
        "brain_voxels": n_brain,
        "mean_error": float(error[brain].mean()) if n_brain else 0.0,
    }
    if score == "mask_size":
        value = scores["mask_size_fraction"]
    elif score == "mean_error":
        value = scores["mean_error"]
    else:
        raise ConfigError(f"infer.score must be 'mask_size' or 'mean_error', got '{score}'")
    return {"scores": scores, "score_name": score, "score": value}


def _input_variant(cfg_variant: str, meta: Mapping[str, Any], model_path: str) -> str:
    """compose_input variant of the model; checks the experiment's variant against the model."""
    model_variant = meta.get("variant", "full")
    if cfg_variant not in ("full", "no_freq", "no_spatial"):
        raise ConfigError(f"variant must be full, no_freq or no_spatial, got '{cfg_variant}'")
    if (cfg_variant == "no_freq") != (model_variant == "no_freq"):
        raise InputError(
            f"experiment variant '{cfg_variant}' needs a {'no_freq' if cfg_variant == 'no_freq' else 'full'} "
            f"model, but the model was trained as '{model_variant}'", path=model_path,
        )
    return "no_freq" if model_variant == "no_freq" else "full"


def itermask2_tau(meta: Mapping[str, Any], percentile: float | None, model_path: str = "") -> tuple[float, float | None]:
    """(tau, percentile) of an IterMask2 model for cfg ``tau_percentile`` (module docstring)."""
    cal = meta.get("calibration") or {}
    if cal.get("tau") is None:
        raise InputError("IterMask2 model has no calibration tau (meta['calibration']['tau'])", path=model_path)
    own = None if cal.get("percentile") is None else float(cal["percentile"])
    if percentile is None or (own is not None and float(percentile) == own):
        return float(cal["tau"]), own
    pcts, values = cal.get("quantile_percentiles"), cal.get("quantiles")
    if not pcts or not values:
        raise InputError(f"infer.tau_percentile {percentile:g} differs from the model's calibration percentile "
                         f"{own} and the model stores no per-percentile quantiles (trained before they were "
                         "stored): retrain it, or use its own percentile", path=model_path)
    table = {float(p): float(v) for p, v in zip(pcts, values)}
    if float(percentile) not in table:
        raise ConfigError(f"infer.tau_percentile {percentile:g}: the model stores quantiles at integer "
                          f"percentiles {int(min(table))}..{int(max(table))} only")
    return table[float(percentile)], float(percentile)


def _recompute_radius(cfg: Mapping[str, Any], meta: Mapping[str, Any], model_path: str) -> int | None:
    """Radius to recompute the HF inputs at (cfg ``hf_radius``, checked against the model), or None."""
    if cfg.get("hf_radius") is None:
        return None
    radius = int(cfg["hf_radius"])
    if meta.get("hf_radius") is not None and int(meta["hf_radius"]) != radius:
        raise InputError(f"experiment hf_radius {radius}, but the model was trained with HF radius "
                         f"{int(meta['hf_radius'])}", path=model_path)
    return radius


def high_frequency_stack(images: list[np.ndarray], radius: int, ndim: int, device: torch.device,
                         batch_size: int) -> list[np.ndarray]:
    """HF images (over the last ``ndim`` axes) of arrays of one shape, in batches on ``device``."""
    from itermask.core.highfreq import high_frequency_torch

    if not images:
        return []
    x = np.stack([np.asarray(a, dtype=np.float32) for a in images])
    out = [high_frequency_torch(torch.from_numpy(x[i:i + batch_size]).to(device), radius, ndim=ndim).cpu().numpy()
           for i in range(0, len(x), max(1, batch_size))]
    return list(np.concatenate(out))


def _recompute_volume_hf(vols: list[dict[str, Any]], radius: int, device: torch.device, batch_size: int) -> None:
    """Replace each volume's ``hf`` by the HF of its image at ``radius`` (grouped by shape)."""
    by_shape: dict[tuple[int, ...], list[dict[str, Any]]] = {}
    for v in vols:
        by_shape.setdefault(v["image"].shape, []).append(v)
    for group in by_shape.values():
        for v, hf in zip(group, high_frequency_stack([v["image"] for v in group], radius, 3, device, batch_size)):
            v["hf"] = hf


def _fixed_tau(cfg: Mapping[str, Any], fixed_tau_path: str | None) -> tuple[float, str]:
    """tau for threshold: fixed: cfg fixed_tau when set, else fixed_tau.json's 'tau'."""
    if cfg.get("fixed_tau") is not None:
        return float(cfg["fixed_tau"]), "config"
    if fixed_tau_path is None:
        raise ConfigError("infer.threshold is 'fixed' but neither infer.fixed_tau nor a fixed_tau.json was given")
    import json

    path = Path(fixed_tau_path)
    try:
        tau = float(json.loads(path.read_text())["tau"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read 'tau' from the fixed-tau file ({exc})", path=path) from exc
    return tau, str(path)


# ----------------------------------------------------------------------------------------
# Loading inputs
# ----------------------------------------------------------------------------------------
def _load_volume_inputs(name: str, cond: Mapping[str, Any]) -> dict[str, Any]:
    """Image, HF, brain (and label) of one 3D condition, checked to share one grid."""
    for key in ("image", "brain"):
        if not cond.get(key):
            raise InputError(f"condition '{name}' has no '{key}' path")
    img = load_nifti(cond["image"], reorient=False)
    brain_img = load_nifti(cond["brain"], reorient=False)
    check_same_grid(brain_img, img, path=cond["brain"])
    out: dict[str, Any] = {
        "image": np.asarray(img.dataobj, dtype=np.float32),
        "brain": np.asarray(brain_img.dataobj) > 0,
        "affine": img.affine,
        "paths": {k: (str(cond[k]) if cond.get(k) else None) for k in ("image", "hf", "brain", "label")},
        "label": None,
    }
    if not out["brain"].any():
        raise InputError("brain mask is empty", path=cond["brain"])
    if cond.get("hf"):
        hf_img = load_nifti(cond["hf"], reorient=False, allow_empty=True)
        check_same_grid(hf_img, img, path=cond["hf"])
        out["hf"] = np.asarray(hf_img.dataobj, dtype=np.float32)
    if cond.get("label"):
        lab = load_nifti(cond["label"], reorient=False, allow_empty=True)
        check_same_grid(lab, img, path=cond["label"])
        out["label"] = np.asarray(lab.dataobj) > 0
    return out


def _load_npz_inputs(name: str, cond: Mapping[str, Any]) -> dict[str, Any]:
    path = Path(cond["slices"])
    if not path.exists():
        raise InputError("slices file does not exist", path=path)
    with np.load(path, allow_pickle=False) as z:
        missing = {"image", "hf", "brain", "index"} - set(z.files)
        if missing:
            raise InputError(f"slices file lacks keys {sorted(missing)}", path=path)
        data = {k: z[k] for k in z.files}
    image = data["image"].astype(np.float32)
    if image.ndim != 3 or image.shape[0] == 0:
        raise InputError(f"expected image of shape (n, H, W) with n >= 1, got {image.shape}", path=path)
    for k in ("hf", "brain"):
        if data[k].shape != image.shape:
            raise InputError(f"'{k}' has shape {data[k].shape}, 'image' has {image.shape}", path=path)
    brain = data["brain"].astype(bool)
    empty = np.flatnonzero(~brain.reshape(len(brain), -1).any(1))
    if empty.size:
        raise InputError(f"slices {data['index'][empty].tolist()} have an empty brain mask", path=path)
    label = data.get("label")
    return {
        "image": image, "hf": data["hf"].astype(np.float32), "brain": brain,
        "label": None if label is None else label.astype(bool), "index": data["index"].astype(int),
        "role": str(data["role"]) if "role" in data else None, "paths": {"slices": str(path)},
    }


def _model_size(meta: Mapping[str, Any]) -> int | None:
    """Training slice size (px) of a 2D model: meta network.image_size, else image_shape[0]."""
    value = (meta.get("network") or {}).get("image_size")
    if value is None and meta.get("image_shape"):
        value = meta["image_shape"][0]
    return None if value is None else int(value)


# ----------------------------------------------------------------------------------------
# The three kinds of runs (arrays in, arrays out)
# ----------------------------------------------------------------------------------------
def _run_3d(
    model: torch.nn.Module,
    vols: list[dict[str, Any]],
    seeds: list[int],
    *,
    input_variant: str,
    percents: tuple[float, ...],
    choose_tau: Callable[[np.ndarray], tuple[float, Any]],
    tol: float,
    max_iterations: int,
    batch_size: int,
    device: torch.device,
) -> list[Result3D]:
    for v in vols:
        bad = [n for n in v["image"].shape if n % SPATIAL_DIVISOR_3D]
        if bad:
            raise InputError(
                f"volume shape {v['image'].shape} is not divisible by {SPATIAL_DIVISOR_3D} (set preprocess.box)",
                path=v["paths"]["image"],
            )
        if "hf" not in v:
            raise InputError("3D inference needs the high-frequency image ('hf' path)", path=v["paths"]["image"])
    return run_itermask3d(
        model,
        [torch.from_numpy(v["image"]) for v in vols],
        [torch.from_numpy(v["hf"]) for v in vols],
        [torch.from_numpy(v["brain"]) for v in vols],
        seeds, percents=percents, choose_tau=choose_tau, variant=input_variant, tol=tol,
        max_iterations=max_iterations, batch_size=batch_size, device=device,
    )


def _slices_of_volume(vol: dict[str, Any], size: int, hf_radius: int) -> dict[str, np.ndarray]:
    """Axial slices with brain of a volume, scaled and resized for a 2D model, plus their HF."""
    from itermask.core.highfreq import high_frequency_torch
    from itermask.preprocess.slices2d import resize_slices, scale_for_2d

    brain = vol["brain"]
    z = np.flatnonzero(brain.any(axis=(0, 1)))
    try:
        scaled = np.asarray(scale_for_2d(vol["image"], brain), dtype=np.float32)
    except ValueError as exc:
        raise InputError(f"cannot scale the volume for the 2D model ({exc})", path=vol["paths"]["image"]) from exc
    img = np.moveaxis(scaled[:, :, z], -1, 0)
    br = np.moveaxis(brain[:, :, z], -1, 0)
    img_r = np.asarray(resize_slices(img, size), dtype=np.float32)
    br_r = np.asarray(resize_slices(br, size), dtype=bool)
    keep = br_r.reshape(len(br_r), -1).any(axis=1)
    hf_r = high_frequency_torch(torch.from_numpy(img_r[keep]), hf_radius, ndim=2).numpy()
    return {"scaled": scaled, "z": z[keep], "image": img_r[keep], "hf": hf_r, "brain": br_r[keep]}


def _resize_back(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n, s, s) -> (n, *shape) by bilinear interpolation (area averaging when shrinking)."""
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[:, None]
    shrink = shape[0] < t.shape[-2] and shape[1] < t.shape[-1]
    mode = "area" if shrink else "bilinear"
    kw = {} if shrink else {"align_corners": False}
    return F.interpolate(t, size=shape, mode=mode, **kw)[:, 0].numpy()


def _slicewise_to_volume(vol: dict[str, Any], sl: dict[str, np.ndarray], res: list[Result2D]) -> dict[str, np.ndarray]:
    """Stack 2D results back into the volume grid (error/mask restricted to the brain)."""
    shape = vol["image"].shape
    brain = vol["brain"]
    recon = sl["scaled"].copy()  # slices without brain keep the scaled input
    error = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    if res:
        z = sl["z"]
        r = _resize_back(np.stack([q.recon.numpy() for q in res]), shape[:2])
        e = _resize_back(np.stack([q.error.numpy() for q in res]), shape[:2])
        m = _resize_back(np.stack([q.mask.numpy().astype(np.float32) for q in res]), shape[:2]) > 0.5
        recon[:, :, z] = np.moveaxis(r, 0, -1)
        error[:, :, z] = np.moveaxis(e, 0, -1)
        mask[:, :, z] = np.moveaxis(m, 0, -1)
    return {"recon": recon, "error": np.where(brain, error, 0.0).astype(np.float32), "mask": mask & brain}


def _itermask2_params(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "first_percentile": float(cfg.get("first_step_percentile", 40)),
        "tol": float(cfg.get("tol", 0.01)),
        "max_iterations": int(cfg.get("max_iterations", 30)),
        "batch_size": int(cfg.get("batch_size", 64)),
    }


def _run_itermask2_pooled(
    models: Mapping[str, torch.nn.Module],
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]],
    *,
    tau: float,
    input_variant: str,
    params: Mapping[str, Any],
    device: torch.device,
) -> list[list[Result2D]]:
    """Run IterMask2 on the slices of several inputs in one lockstep pool; split per input."""
    sizes = [len(p[0]) for p in pieces]
    if sum(sizes) == 0:
        return [[] for _ in pieces]
    cat = [torch.from_numpy(np.concatenate([p[i] for p in pieces if len(p[0])])) for i in range(3)]
    seeds = [s for p in pieces for s in p[3]]
    res = run_itermask2(models["first"], models["masked"], cat[0], cat[1], cat[2], seeds, tau=tau,
                        variant=input_variant, device=device, **params)
    out, start = [], 0
    for n in sizes:
        out.append(res[start : start + n])
        start += n
    return out


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------
def _plot_curve(path: Path, percents: np.ndarray, curve: np.ndarray, fit: dict | None, tau: float,
                mode: str, y_limit: float) -> None:
    """Threshold curve with tangent fit, k* and tau: linear zoom (left) and log scale (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, log_scale in zip(axes, (False, True)):
        ax.plot(percents, curve, "o-", ms=3, label="threshold curve $T$")
        if fit and fit.get("a") is not None and fit.get("b"):
            a, b = float(fit["a"]), float(fit["b"])
            t = np.linspace(percents[0], percents[-1], 400)
            t = t[np.abs(b * t) < 0.98 * np.pi / 2]
            ax.plot(t, a * np.tan(b * t), "--", label=f"fit {a:.3g}·tan({b:.3g}·t)")
        if fit and fit.get("t_star") is not None:
            ax.axvline(float(fit["t_star"]), color="tab:red", lw=1, label=f"k* (t = {float(fit['t_star']):g} %)")
        ax.axhline(tau, color="tab:green", lw=1, label=f"tau = {tau:.4g} ({mode})")
        ax.set_xlabel("brain voxels removed (%)")
        if log_scale:
            positive = curve[np.isfinite(curve) & (curve > 0)]
            ax.set_yscale("log")
            if positive.size:
                ax.set_ylim(min(positive.min(), tau) / 2, max(positive.max(), tau) * 2)
            ax.axhline(y_limit, color="grey", lw=0.8, ls=":", label=f"fit y-limit {y_limit:g}")
            ax.set_title("log scale", fontsize=9)
        else:
            ax.set_ylim(0, max(3.0 * tau, 1e-6))
            ax.set_ylabel("error threshold")
            title = "IterMask3D phase A (zoom: 0 to 3 tau)"
            if fit:
                r2 = fit.get("r2")
                title += f"  [{fit.get('branch')}, R² = {'n/a' if r2 is None else f'{float(r2):.3f}'}]"
            ax.set_title(title, fontsize=9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _write_condition(folder: Path, affine: np.ndarray, arrays: Mapping[str, np.ndarray], result: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        if arr is None:
            continue
        dtype = np.uint8 if arr.dtype == bool else np.float32
        save_nifti(arr, affine, folder / f"{name}.nii.gz", dtype=dtype)
    write_json(folder / "result.json", _finite(result))


# ----------------------------------------------------------------------------------------
# Stage function
# ----------------------------------------------------------------------------------------
def infer_subject(
    model_path: str,
    conditions: dict[str, dict],
    cfg: dict,
    out_dir: str,
    *,
    device: str = "auto",
    seed: int = 0,
    fixed_tau_path: str | None = None,
    log: Callable[[str], Any] = print,
) -> None:
    """Run inference for every condition of one subject; write ``out_dir/<condition>/``.

    ``cfg`` = the experiment's ``infer`` settings plus ``method`` and ``variant``. 3D
    conditions ({"image", "hf", "brain", "label"}) and 2D ones ({"slices": npz}) are
    processed together in lockstep batches of ``cfg["batch_size"]``. See the module
    docstring for the kinds of runs and the outputs.
    """
    t_start = time.perf_counter()
    dev = resolve_device(device)
    models, meta = _load_models(model_path, dev)
    method = cfg.get("method") or meta.get("method")
    if meta.get("method") and method != meta["method"]:
        raise InputError(f"experiment method '{method}' but the model is a '{meta['method']}' model", path=model_path)
    variant = cfg.get("variant", "full")
    input_variant = _input_variant(variant, meta, model_path)
    subject_dir = Path(out_dir).name
    log(f"[infer] {method}/{variant} on {len(conditions)} condition(s) of {subject_dir}, device {dev}")

    vols = {n: _load_volume_inputs(n, c) for n, c in conditions.items() if "slices" not in c}
    npzs = {n: _load_npz_inputs(n, c) for n, c in conditions.items() if "slices" in c}
    radius = _recompute_radius(cfg, meta, model_path)
    if radius is not None:
        batch = max(1, int(cfg.get("batch_size", 4)))
        if method == "itermask3d":
            _recompute_volume_hf(list(vols.values()), radius, dev, batch)
        for d in npzs.values():
            d["hf"] = np.stack(high_frequency_stack(list(d["image"]), radius, 2, dev, batch))
        log(f"[infer] HF images recomputed at radius {radius} (model's radius)")
    common = {"method": method, "variant": variant, "model": str(model_path), "device": str(dev),
              "base_seed": int(seed), "hf_radius": meta.get("hf_radius"), "hf_recomputed": radius is not None}

    with atomic_dir(out_dir) as tmp:
        if method == "itermask3d":
            if npzs:
                raise InputError("an IterMask3D model cannot run on 2D slice files", path=next(iter(npzs.values()))["paths"]["slices"])
            _infer_itermask3d(models["masked"], vols, cfg, tmp, subject_dir, seed, input_variant, dev,
                              fixed_tau_path, common, log)
        elif method == "itermask2":
            _infer_itermask2(models, meta, vols, npzs, cfg, tmp, subject_dir, seed, input_variant, dev, common, log)
        else:
            raise ConfigError(f"unknown method '{method}' (itermask3d | itermask2)")
    log(f"[infer] {subject_dir} done in {time.perf_counter() - t_start:.1f} s")


def _infer_itermask3d(model, vols, cfg, tmp: Path, subject_dir, seed, input_variant, dev, fixed_tau_path,
                      common, log) -> None:
    from itermask.core.threshold import subject_threshold

    try:
        percents = phase_a_percents(float(cfg.get("step_percent", 1)))
    except ValueError as exc:
        raise ConfigError(f"infer.step_percent: {exc}") from exc
    gamma, y_limit, r2_min = float(cfg.get("gamma", 0.01)), float(cfg.get("y_limit", 10.0)), float(cfg.get("r2_min", 0.85))
    mode = cfg.get("threshold", "subject")
    if mode not in ("subject", "fixed"):
        raise ConfigError(f"infer.threshold must be 'subject' or 'fixed', got '{mode}'")
    fixed, fixed_src = _fixed_tau(cfg, fixed_tau_path) if mode == "fixed" else (None, None)
    t_arr = np.asarray(percents)

    def choose_tau(curve: np.ndarray) -> tuple[float, Any]:
        fit = subject_threshold(curve, gamma, y_limit=y_limit, r2_min=r2_min, t=t_arr)
        return (fit.tau if fixed is None else fixed), fit

    single = common["variant"] == "no_spatial"
    max_it = 1 if single else int(cfg.get("max_iterations", 30))
    tol = float(cfg.get("tol", 0.01))
    names = list(vols)
    seeds = [condition_seed(seed, subject_dir, n) for n in names]
    results = _run_3d(model, [vols[n] for n in names], seeds, input_variant=input_variant, percents=percents,
                      choose_tau=choose_tau, tol=tol, max_iterations=max_it,
                      batch_size=int(cfg.get("batch_size", 1)), device=dev)
    for name, s, r in zip(names, seeds, results):
        v = vols[name]
        fit = r.tau_info.to_dict()
        error, mask = r.error.numpy(), r.mask.numpy()
        result = {
            **common, "kind": "3d", "condition": name, "inputs": v["paths"], "seed": s,
            "percents": r.percents, "curve": r.curve, "fit": fit, "subject_tau": float(r.tau_info.tau),
            "k_star": fit.get("k"), "tau": r.tau, "threshold": mode, "fixed_tau_source": fixed_src,
            "gamma": gamma, "y_limit": y_limit, "r2_min": r2_min, "step_percent": float(cfg.get("step_percent", 1)),
            "tol": tol, "max_iterations": max_it, "iterations_a": r.iterations_a, "iterations_b": r.iterations_b,
            "phase_b_changes": r.changes, "converged": r.converged, "seconds": r.seconds,
            **detection_scores(error, mask, v["brain"], cfg.get("score", "mask_size")),
        }
        folder = tmp / name
        _write_condition(folder, v["affine"], {
            "recon": r.recon.numpy(), "error": error, "mask": mask, "brainmask": v["brain"], "label": v["label"],
        }, result)
        _plot_curve(folder / "curve.png", r.percents, r.curve, fit, r.tau, mode, y_limit)
        log(f"[infer] {name}: tau {r.tau:.4g} ({mode}), phase A {r.iterations_a} it, phase B {r.iterations_b} it, "
            f"mask {result['scores']['mask_size_fraction']:.4f} of brain")


def _infer_itermask2(models, meta, vols, npzs, cfg, tmp: Path, subject_dir, seed, input_variant, dev, common,
                     log) -> None:
    tau, tau_percentile = itermask2_tau(meta, cfg.get("tau_percentile"), common["model"])
    params = _itermask2_params(cfg)
    size = _model_size(meta)
    pieces, kinds = [], []
    for name, v in vols.items():
        if size is None:
            raise InputError("IterMask2 model meta has no image size (network.image_size): cannot run it slice-wise",
                             path=common["model"])
        sl = _slices_of_volume(v, size, int(meta.get("hf_radius", 15)))
        v["slices"] = sl
        seeds = [condition_seed(seed, subject_dir, name, str(int(z))) for z in sl["z"]]
        pieces.append((sl["image"], sl["hf"], sl["brain"], seeds))
        kinds.append(("slicewise", name))
    for name, d in npzs.items():
        if size is not None and d["image"].shape[1:] != (size, size):
            raise InputError(f"slices are {d['image'].shape[1:]}, the model expects {size}x{size}",
                             path=d["paths"]["slices"])
        seeds = [condition_seed(seed, subject_dir, name, str(int(z))) for z in d["index"]]
        pieces.append((d["image"], d["hf"], d["brain"], seeds))
        kinds.append(("2d", name))
    per_input = _run_itermask2_pooled(models, pieces, tau=tau, input_variant=input_variant, params=params, device=dev)
    score = cfg.get("score", "mask_size")
    for (kind, name), res, piece in zip(kinds, per_input, pieces):
        base = {**common, "kind": kind, "condition": name, "tau": tau, "threshold": "calibration",
                "tau_percentile": tau_percentile,
                "first_step_percentile": params["first_percentile"], "tol": params["tol"],
                "max_iterations": params["max_iterations"], "seeds": piece[3],
                "iterations": [q.iterations for q in res], "shrinks": [q.shrinks for q in res],
                "converged": [q.converged for q in res]}
        folder = tmp / name
        if kind == "slicewise":
            v = vols[name]
            out = _slicewise_to_volume(v, v["slices"], res)
            result = {**base, "inputs": v["paths"], "slices": v["slices"]["z"].tolist(), "units": "scaled_2d",
                      **detection_scores(out["error"], out["mask"], v["brain"], score)}
            _write_condition(folder, v["affine"], {**out, "input2d": v["slices"]["scaled"],
                                                   "brainmask": v["brain"], "label": v["label"]}, result)
        else:
            d = npzs[name]

            def hwn(a: np.ndarray) -> np.ndarray:
                return np.moveaxis(a, 0, -1)

            error = np.stack([q.error.numpy() for q in res])
            mask = np.stack([q.mask.numpy() for q in res])
            per_slice = [detection_scores(error[i], mask[i], d["brain"][i], score)["scores"] for i in range(len(res))]
            result = {**base, "inputs": d["paths"], "slices": d["index"].tolist(), "role": d["role"],
                      "per_slice_scores": per_slice, **detection_scores(error, mask, d["brain"], score)}
            _write_condition(folder, np.eye(4), {
                "recon": hwn(np.stack([q.recon.numpy() for q in res])), "error": hwn(error), "mask": hwn(mask),
                "brainmask": hwn(d["brain"]), "label": None if d["label"] is None else hwn(d["label"]),
            }, result)
        log(f"[infer] {name}: {kind}, {len(res)} slice(s), tau {tau:.4g}, "
            f"mean iterations {np.mean([q.iterations for q in res]) if res else 0:.1f}")


# ----------------------------------------------------------------------------------------
# Human in the loop and fixed tau
# ----------------------------------------------------------------------------------------
def rethreshold(
    model_path: str,
    condition_dir: str,
    tau: float,
    *,
    device: str = "auto",
    out_name: str | None = None,
) -> Path:
    """Re-run the final stage of one condition at a user-chosen ``tau`` (no retraining).

    IterMask3D: phase B from the whole brain with ``tau`` (same noise seed and stop rule as
    the original run, so the original tau gives back the original mask). IterMask2: the
    2D procedure with ``tau`` in place of the calibration tau. Inputs are found through the
    paths in ``result.json``. Writes ``mask_tau-<tau>.nii.gz`` and a ``.json`` beside the
    original mask (which is not touched); returns the mask path.
    """
    import json

    folder = Path(condition_dir)
    res_path = folder / "result.json"
    if not res_path.exists():
        raise InputError("no result.json: not an inference condition folder", path=folder)
    prev = json.loads(res_path.read_text())
    dev = resolve_device(device)
    models, meta = _load_models(model_path, dev)
    input_variant = _input_variant(prev["variant"], meta, model_path)
    tau = float(tau)
    name = out_name or f"mask_tau-{tau:g}.nii.gz"
    if not name.endswith(".nii.gz"):
        name += ".nii.gz"
    kind = prev.get("kind")
    for p in (prev.get("inputs") or {}).values():
        if p and not Path(p).exists():
            raise InputError("input of the original run not found (run from the pipeline's working directory, "
                             "where the relative paths of result.json resolve)", path=p)
    t0 = time.perf_counter()
    recompute = int(prev["hf_radius"]) if prev.get("hf_recomputed") else None
    if kind == "3d":
        vol = _load_volume_inputs(prev["condition"], prev["inputs"])
        if recompute is not None:
            _recompute_volume_hf([vol], recompute, dev, 1)
        (r,) = _run_3d(models["masked"], [vol], [int(prev["seed"])], input_variant=input_variant, percents=(),
                       choose_tau=lambda _c: (tau, None), tol=float(prev["tol"]),
                       max_iterations=int(prev["max_iterations"]), batch_size=1, device=dev)
        error, mask, brain, affine = r.error.numpy(), r.mask.numpy(), vol["brain"], vol["affine"]
        info = {"iterations_b": r.iterations_b, "phase_b_changes": r.changes, "converged": r.converged}
    elif kind in ("slicewise", "2d"):
        params = {"first_percentile": float(prev["first_step_percentile"]), "tol": float(prev["tol"]),
                  "max_iterations": int(prev["max_iterations"]), "batch_size": 64}
        if kind == "slicewise":
            vol = _load_volume_inputs(prev["condition"], prev["inputs"])
            sl = _slices_of_volume(vol, _model_size(meta), int(meta.get("hf_radius", 15)))
            piece = (sl["image"], sl["hf"], sl["brain"], [int(s) for s in prev["seeds"]])
        else:
            d = _load_npz_inputs(prev["condition"], prev["inputs"])
            if recompute is not None:
                d["hf"] = np.stack(high_frequency_stack(list(d["image"]), recompute, 2, dev, 64))
            piece = (d["image"], d["hf"], d["brain"], [int(s) for s in prev["seeds"]])
        (res,) = _run_itermask2_pooled(models, [piece], tau=tau, input_variant=input_variant, params=params,
                                       device=dev)
        if kind == "slicewise":
            out = _slicewise_to_volume(vol, sl, res)
            error, mask, brain, affine = out["error"], out["mask"], vol["brain"], vol["affine"]
        else:
            error = np.moveaxis(np.stack([q.error.numpy() for q in res]), 0, -1)
            mask = np.moveaxis(np.stack([q.mask.numpy() for q in res]), 0, -1)
            brain, affine = np.moveaxis(d["brain"], 0, -1), np.eye(4)
        info = {"iterations": [q.iterations for q in res], "converged": [q.converged for q in res]}
    else:
        raise InputError(f"result.json has an unknown kind '{kind}'", path=res_path)
    out_path = folder / name
    save_nifti(mask, affine, out_path, dtype=np.uint8)
    record = {"tau": tau, "original_tau": prev.get("tau"), "kind": kind, "model": str(model_path),
              "device": str(dev), "seconds": time.perf_counter() - t0, "mask": name, **info,
              **detection_scores(error, mask, brain, prev.get("score_name", "mask_size"))}
    write_json(folder / (name[: -len(".nii.gz")] + ".json"), _finite(record))
    return out_path

