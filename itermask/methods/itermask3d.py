"""IterMask3D (METHOD.md §4-6): a 3D residual UNet reconstructs masked volumes, guided by the
high-frequency image; at test time phase A shrinks the mask from the whole brain in steps of
``step_percent`` % and fits the threshold curve, which gives the subject-specific tau
(``itermask.core.threshold``; ``k_fallback`` when the derivative never exceeds gamma); phase B
restarts from the whole brain and keeps M = [e > tau] until the mask changes by less than ``tol``.

Thresholds (``infer.threshold``): ``subject`` (the fit); ``fixed`` (IterMask3D Tables 6-7: "a
cross-validated threshold on normal data"): ``infer.fixed_tau`` if set, else the calibration
written when training ends, the rule of IterMask2 (``tau_percentile``-th percentile of the
validation errors inside training masks, ``_itermask.calibrate``); with ``fixed_phase_a``
(default) phase A still runs with the experiment's gamma, so the record holds the subject tau
beside the fixed one; without it phase B alone runs (cheaper; no curve in the record).

``-spatial`` (variant ``no_spatial``; METHOD.md §6, IterMask3D Table 5 "-spatial": no spatial
masking iterations): one reconstruction from the high-frequency image alone, i.e. the network
with the whole brain masked (noise) plus the HF image, no phase A and no phase-B iterations;
its mask = [e > the calibrated tau] (``threshold: single_step`` in the record). Before issue 10
this ran phase A and one phase-B step.

Settings (schema ``method_defaults.itermask3d``): network ``channels``, ``dropout``,
``residual``; infer ``step_percent``, ``fine_from_percent``, ``gamma``, ``y_limit``, ``r2_min``, ``k_fallback``,
``curve_scale_percent``, ``threshold`` (``subject`` | ``fixed``), ``fixed_tau``, ``tau_percentile``, ``tol``,
``max_iterations``, ``batch_size``, ``score``.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Mapping

import numpy as np

from itermask.config.settings import thaw
from itermask.errors import InputError
from itermask.methods import _itermask as im
from itermask.config.conditions import ORACLE_CONDITIONS
from itermask.methods.base import ConditionOutput, InferenceContext, InputSpec, Method

SPATIAL_DIVISOR = 16  # four stride-2 levels of the 3D UNet
NETWORK_KEYS = ("channels", "dropout", "residual", "input_skip")


class IterMask3D(Method):
    name = "itermask3d"
    spatial_dims = 3
    primary_network = "masked"
    requires_validation = True  # the calibration (fixed tau, -spatial) needs healthy validation scans
    training_infer_keys = ("tau_percentile", "batch_size")  # the calibration's

    # -- inputs -------------------------------------------------------------------------
    def train_inputs(self, settings: Any) -> InputSpec:
        return InputSpec("volume", hf=settings.variant != "no_freq")

    def condition_inputs(self, settings: Any, condition: str) -> InputSpec:
        return self.train_inputs(settings)

    def check(self, settings: Any) -> None:
        im.check_variant(settings.variant)

    def describe(self, settings: Any) -> str:
        cfg = settings.infer
        parts = [im.describe_input(settings)]
        if settings.network["input_skip"]:
            parts.append("full-resolution input skip")
        if im.single_step(settings.variant):
            return "; ".join(parts + [im.describe_single_step(cfg)])
        parts.append(im.describe_threshold(cfg))
        if cfg["threshold"] == "fixed" and not cfg["fixed_phase_a"]:
            parts.append("no phase A")
        start = "phase A's mask at k*" if cfg["phase_b_start"] == "tau_mask" and cfg["threshold"] == "subject" \
            else "the whole brain"
        parts.append(f"phase B from {start}, noise drawn {'once' if cfg['phase_b_noise'] == 'fixed' else 'per iteration'}, "
                     + im.describe_stop(cfg))
        return "; ".join(parts)

    # -- training -----------------------------------------------------------------------
    def build_networks(self, settings: Any, image_shape: tuple[int, ...]) -> dict[str, Any]:
        from itermask.core.model_input import in_channels

        network = {k: thaw(settings.network[k]) for k in NETWORK_KEYS}
        return {"network": network, "in_channels": {"masked": in_channels(im.input_variant(settings.variant))},
                "variants": {"masked": settings.variant}}

    def networks_from_meta(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        from itermask.core.networks import build_network

        return {k: build_network(self.name, int(c), dict(meta["network"])) for k, c in meta["in_channels"].items()}

    def corrupt(self, settings: Any, brains: np.ndarray, sample_ids: np.ndarray, epoch: int) -> dict[str, Any]:
        return im.corrupt(brains, sample_ids, epoch, settings.seed, settings.train.fixed_masks)

    def losses(self, settings: Any, networks: Mapping[str, Any], batch: Mapping[str, Any], generator: Any) -> dict:
        return im.losses(networks, {"masked": im.input_variant(settings.variant)}, batch, generator)

    def validation_losses(self, settings: Any, networks: Mapping[str, Any], val: Any, device: Any,
                          precision: Any) -> dict[str, float]:
        return im.validation_losses(networks, {"masked": im.input_variant(settings.variant)}, val, settings.seed,
                                    int(settings.infer["batch_size"]), device, precision, self.primary_network)

    def finish_training(self, settings: Any, networks: Mapping[str, Any], val: Any, device: Any, precision: Any,
                        log: Any) -> dict[str, Any]:
        """Calibration on the healthy validation volumes (``_itermask.calibrate``): the fixed tau."""
        return im.calibrate(self.name, settings, networks["masked"], im.input_variant(settings.variant), val,
                            device, precision, log)

    # -- inference ----------------------------------------------------------------------
    def infer(self, networks: Mapping[str, Any], inputs: Mapping[str, Any], ctx: InferenceContext) -> dict:
        s, cfg = ctx.settings, ctx.settings.infer
        im.check_model_variant(s.variant, ctx.meta, ctx.model_path)
        plan = _plan(s, ctx)
        names = list(inputs)
        seeds = [ctx.seed(n) for n in names]
        results = run_volumes(networks["masked"], [inputs[n] for n in names], seeds, variant=s.variant,
                              percents=plan["percents"], choose_tau=plan["choose_tau"], tol=float(cfg["tol"]),
                              max_iterations=plan["max_iterations"], batch_size=int(cfg["batch_size"]),
                              device=ctx.device, amp=ctx.amp, phase_b_noise=cfg["phase_b_noise"],
                              phase_b_start=cfg["phase_b_start"])
        out = {}
        for name, seed, r in zip(names, seeds, results):
            v = inputs[name]
            fit = r.tau_info.to_dict() if r.tau_info is not None else None
            record = {
                "kind": "3d", "inputs": v.paths, "seed": seed, "percents": r.percents, "curve": r.curve, "fit": fit,
                "subject_tau": None if fit is None else float(r.tau_info.tau),
                "k_star": None if fit is None else fit["k"], "tau": r.tau, "threshold": plan["mode"],
                "fixed_tau_source": plan["source"], "gamma": float(cfg["gamma"]), "y_limit": float(cfg["y_limit"]),
                "r2_min": float(cfg["r2_min"]), "k_fallback": cfg["k_fallback"],
                "curve_scale_percent": cfg["curve_scale_percent"],
                "step_percent": float(cfg["step_percent"]), "fine_from_percent": cfg["fine_from_percent"],
                "tol": float(cfg["tol"]),
                "phase_b_noise": cfg["phase_b_noise"],
                "phase_b_start": cfg["phase_b_start"] if fit is not None and plan["mode"] == "subject" else "brain",
                "max_iterations": plan["max_iterations"], "iterations_a": r.iterations_a,
                "iterations_b": r.iterations_b, "phase_b_changes": r.changes, "converged": r.converged,
            }  # no wall time here: the same config and seed give the same file (the log has the time)
            out[name] = _output(r, v, record, cfg["score"])
            _add_oracle(out[name], networks["masked"], v, r.tau, ctx, name)
            if fit is not None:
                out[name].figures["curve.png"] = partial(_plot, r=r, fit=fit, mode=plan["mode"],
                                                         y_limit=float(cfg["y_limit"]))
            ctx.log(f"[infer] {name}: tau {r.tau:.4g} ({plan['mode']}), phase A {r.iterations_a} it, phase B "
                    f"{r.iterations_b} it, mask {out[name].record['scores']['mask_size_fraction']:.4f} of brain, "
                    f"{r.seconds:.1f} s")
        return out

    def rethreshold(self, networks: Mapping[str, Any], previous: Mapping[str, Any], tau: float,
                    ctx: InferenceContext) -> tuple[ConditionOutput, dict[str, Any]]:
        """Phase B from the whole brain at ``tau``, with the original run's noise seed and stop rule."""
        from itermask.io.samples import read_volume

        im.check_model_variant(previous["variant"], ctx.meta, ctx.model_path)
        vol = read_volume(previous["inputs"], dataset=previous["dataset"], subject=previous["subject"])
        # no phase A here, so phase B starts from the whole brain; a record without phase_b_noise
        # predates the setting (issue 13), when phase B drew fresh noise at every iteration
        (r,) = run_volumes(networks["masked"], [vol], [int(previous["seed"])], variant=previous["variant"],
                           percents=(), choose_tau=lambda _c: (tau, None), tol=float(previous["tol"]),
                           max_iterations=int(previous["max_iterations"]), batch_size=1, device=ctx.device,
                           amp=ctx.amp, phase_b_noise=previous.get("phase_b_noise", "fresh"), phase_b_start="brain")
        info = {"iterations_b": r.iterations_b, "phase_b_changes": r.changes, "converged": r.converged}
        return _output(r, vol, {}, previous["score_name"]), info


def _plan(s: Any, ctx: InferenceContext) -> dict[str, Any]:
    """Where tau comes from and how many iterations run (module docstring): ``mode`` subject |
    fixed (phase A still runs, so the subject tau is recorded beside) | single_step (-spatial)."""
    from itermask.inference.tau import fixed_tau

    cfg = s.infer
    if im.single_step(s.variant) or cfg["threshold"] == "fixed":
        tau, source = fixed_tau(cfg["fixed_tau"], ctx.meta, float(cfg["tau_percentile"]), ctx.model_path)
    else:
        tau, source = None, None
    if im.single_step(s.variant):
        return {"mode": "single_step", "source": source, "percents": (), "max_iterations": 1,
                "choose_tau": lambda _curve: (tau, None)}
    if cfg["threshold"] == "fixed" and not cfg["fixed_phase_a"]:
        return {"mode": "fixed", "source": source, "percents": (), "max_iterations": int(cfg["max_iterations"]),
                "choose_tau": lambda _curve: (tau, None)}
    t_arr = np.asarray(im.phase_a_schedule(cfg))
    choose = im.chooser(cfg, t_arr)

    def choose_tau(curve: np.ndarray) -> tuple[float, Any]:
        subject_tau, fit = choose(curve)
        return (subject_tau if tau is None else tau), fit

    return {"mode": cfg["threshold"], "source": source, "percents": tuple(t_arr), "choose_tau": choose_tau,
            "max_iterations": int(cfg["max_iterations"])}


def _add_oracle(out: ConditionOutput, model: Any, v: Any, tau: float, ctx: InferenceContext, name: str) -> None:
    """The per-image-best oracle (``itermask.core.oracle``) for a test condition with a lesion
    label: ``mask_oracle`` and record ``oracle`` (it uses the test label)."""
    import torch

    from itermask.core.oracle import oracle_3d

    factors = [float(f) for f in ctx.settings.infer["oracle_tau_factors"]]
    if (ctx.condition(name) not in ORACLE_CONDITIONS or v.label is None or not v.label.any() or not factors
            or im.single_step(ctx.settings.variant)):
        return
    hf = v.hf if v.hf is not None else np.zeros_like(v.image)
    seed = ctx.seed(name, "oracle")
    best = oracle_3d(model, *(torch.from_numpy(a) for a in (v.image, hf, v.brain, v.label)), seed, tau=tau,
                     factors=factors, variant=im.input_variant(ctx.settings.variant), device=ctx.device,
                     tol=float(ctx.settings.infer["tol"]), max_iterations=int(ctx.settings.infer["max_iterations"]),
                     fixed_noise=ctx.settings.infer["phase_b_noise"] == "fixed", amp=ctx.amp)
    out.arrays["mask_oracle"] = best.mask.numpy()
    out.record["oracle"] = {"uses_test_labels": True, "tau": best.tau, "iteration": best.iteration,
                            "dice": best.dice, "tau_factors": factors, "base_tau": tau, "seed": seed,
                            "noise": ctx.settings.infer["phase_b_noise"]}


def _output(r: Any, v: Any, record: dict[str, Any], score: str) -> ConditionOutput:
    from itermask.inference.outputs import detection_scores

    error, mask = r.error.numpy(), r.mask.numpy()
    record = {**record, **detection_scores(error, mask, v.brain, score)}
    arrays = {"recon": r.recon.numpy(), "error": error, "mask": mask, "brainmask": v.brain, "label": v.label}
    return ConditionOutput(arrays, v.affine, record)


def _plot(path: Any, *, r: Any, fit: dict, mode: str, y_limit: float) -> None:
    from itermask.inference.plots import threshold_curve_plot

    threshold_curve_plot(path, r.percents, r.curve, fit, r.tau, mode, y_limit)


def run_volumes(model: Any, vols: list[Any], seeds: list[int], *, variant: str, percents: tuple[float, ...],
                choose_tau: Any, tol: float, max_iterations: int, batch_size: int, device: Any, amp: bool,
                phase_b_noise: str, phase_b_start: str) -> list[Any]:
    """IterMask3D on volumes (``itermask.io.samples.Volume``) in lockstep batches (every keyword:
    the experiment's setting, as ``run_itermask3d``'s)."""
    import torch

    from itermask.core.iterative_mask_3d import run_itermask3d

    for v in vols:
        if any(n % SPATIAL_DIVISOR for n in v.image.shape):
            raise InputError(f"volume shape {v.image.shape} is not divisible by {SPATIAL_DIVISOR} "
                             "(set preprocess.box)", path=v.paths["image"])
        if v.hf is None and variant != "no_freq":
            raise InputError("IterMask3D needs the high-frequency image ('hf' path)", path=v.paths["image"])
    hfs = [torch.from_numpy(v.hf if v.hf is not None else np.zeros_like(v.image)) for v in vols]
    return run_itermask3d(
        model, [torch.from_numpy(v.image) for v in vols], hfs, [torch.from_numpy(v.brain) for v in vols], seeds,
        percents=percents, choose_tau=choose_tau, variant=im.input_variant(variant), tol=tol,
        max_iterations=max_iterations, batch_size=batch_size, device=device, amp=amp, phase_b_noise=phase_b_noise,
        phase_b_start=phase_b_start,
    )


METHOD = IterMask3D()
