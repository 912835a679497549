"""IterMask2 (METHOD.md §4-6): two 2D attention UNets on axial slices. The first-iteration
network sees only the high-frequency image; its error above the ``first_step_percentile``-th
percentile of the brain gives the first mask M_1. The masked network then shrinks the mask,
M_{k+1} = M_k & [e_k > tau], until it shrinks by less than ``tol``; tau is the
``tau_percentile``-th percentile of the validation errors inside training masks, calibrated
when training ends (``_itermask.calibrate``; read by ``itermask.inference.tau.calibration_tau``).
``-spatial`` (variant ``no_spatial``, METHOD.md §6, IterMask2 Table 3): one reconstruction from
the high-frequency image alone, the first-iteration network's, no masked iterations; its mask
is [e_1 > tau] (``threshold: single_step`` in the record). Before issue 10 this variant ran the
full procedure, so its row copied the full method's. On a volume (detection) the model runs slice-wise
(``itermask.inference.slicewise``); on a slices file (validation, lesion) on its slices.
``threshold: subject`` (IterMask3D Table 6 "adaptive"): each slice's own tau from IterMask3D's
phase A in place of the calibration tau (``_itermask2_subject``).

Settings (schema ``method_defaults.itermask2``): network ``channels``, ``attention_res``,
``dropout``, ``num_res_blocks``, ``num_heads``, ``middle_attention``; infer
``threshold`` (``fixed`` | ``subject``), ``tau_percentile``, ``first_step_percentile``, ``tol``,
``max_iterations``, ``batch_size``, ``score``, ``lesion_input``; for ``subject`` also
``step_percent``, ``gamma``, ``y_limit``, ``r2_min``, ``k_fallback``, ``curve_scale_percent``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from itermask.config.settings import thaw
from itermask.errors import InputError
from itermask.methods import _itermask as im
from itermask.methods import _itermask2_subject as subject
from itermask.config.conditions import ORACLE_CONDITIONS
from itermask.methods.base import ConditionOutput, InferenceContext, InputSpec, Method, reads_slices

NETWORK_KEYS = ("channels", "attention_res", "dropout", "num_res_blocks", "num_heads", "middle_attention")


class IterMask2(Method):
    name = "itermask2"
    spatial_dims = 2
    primary_network = "masked"
    requires_validation = True
    # the calibration's, and what check() reads of the subject-specific tau's phase-A schedule
    training_infer_keys = ("tau_percentile", "batch_size", "threshold", "step_percent", "fine_from_percent")

    # -- inputs -------------------------------------------------------------------------
    def train_inputs(self, settings: Any) -> InputSpec:
        return InputSpec("slices", hf=True)

    def condition_inputs(self, settings: Any, condition: str) -> InputSpec:
        if reads_slices(settings, condition):
            return InputSpec("slices", hf=True)
        return InputSpec("volume", hf=False)  # slice-wise on the volume; HF computed on the resized slices

    def check(self, settings: Any) -> None:
        im.check_variant(settings.variant)
        subject.check(settings.infer, im.single_step(settings.variant))

    # -- training -----------------------------------------------------------------------
    def describe(self, settings: Any) -> str:
        cfg = settings.infer
        parts = [im.describe_input(settings)]
        if im.single_step(settings.variant):
            return "; ".join(parts + [im.describe_single_step(cfg)])
        parts += [f"first step: the HF-only model, pixels above its {float(cfg['first_step_percentile']):g}th error "
                  "percentile", im.describe_threshold(cfg), im.describe_stop(cfg)]
        return "; ".join(parts)

    def variants(self, variant: str) -> dict[str, str]:
        """Input variant per network, in training order."""
        return {"first": "hf_only", "masked": im.input_variant(variant)}

    def build_networks(self, settings: Any, image_shape: tuple[int, ...]) -> dict[str, Any]:
        from itermask.core.model_input import in_channels

        if image_shape[0] != image_shape[1]:
            raise InputError(f"2D slices must be square, got {image_shape}", dataset=settings.dataset)
        network = {k: thaw(settings.network[k]) for k in NETWORK_KEYS}
        network["image_size"] = int(image_shape[0])
        variants = self.variants(settings.variant)
        return {"network": network, "in_channels": {k: in_channels(v) for k, v in variants.items()},
                "variants": {"first": "hf_only", "masked": settings.variant}}

    def networks_from_meta(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        from itermask.core.networks import build_network

        return {k: build_network(self.name, int(c), dict(meta["network"])) for k, c in meta["in_channels"].items()}

    def corrupt(self, settings: Any, brains: np.ndarray, sample_ids: np.ndarray, epoch: int) -> dict[str, Any]:
        return im.corrupt(brains, sample_ids, epoch, settings.seed, settings.train.fixed_masks)

    def losses(self, settings: Any, networks: Mapping[str, Any], batch: Mapping[str, Any], generator: Any) -> dict:
        return im.losses(networks, self.variants(settings.variant), batch, generator)

    def validation_losses(self, settings: Any, networks: Mapping[str, Any], val: Any, device: Any,
                          precision: Any) -> dict[str, float]:
        return im.validation_losses(networks, self.variants(settings.variant), val, settings.seed,
                                    int(settings.infer["batch_size"]), device, precision, self.primary_network)

    def finish_training(self, settings: Any, networks: Mapping[str, Any], val: Any, device: Any, precision: Any,
                        log: Any) -> dict[str, Any]:
        """Calibration of tau on the healthy validation slices (``_itermask.calibrate``)."""
        return im.calibrate(self.name, settings, networks["masked"], im.input_variant(settings.variant), val,
                            device, precision, log)

    # -- inference ----------------------------------------------------------------------
    def infer(self, networks: Mapping[str, Any], inputs: Mapping[str, Any], ctx: InferenceContext) -> dict:
        from itermask.inference.tau import calibration_tau

        cfg, meta = ctx.settings.infer, ctx.meta
        im.check_model_variant(ctx.settings.variant, meta, ctx.model_path)
        tau, tau_percentile = calibration_tau(meta, float(cfg["tau_percentile"]), ctx.model_path)
        params = _params(cfg, ctx.settings.variant)
        pieces = {name: _piece(v, meta, ctx, name) for name, v in inputs.items()}
        for name, v in inputs.items():
            if getattr(v, "left_out_reason", None):
                ctx.log(f"[infer] {name}: left out ({v.left_out_reason})")
        arrays = [p["arrays"] for p in pieces.values()]
        own = cfg["threshold"] == "subject" and not im.single_step(ctx.settings.variant)
        phase_a = subject.subject_taus(networks["masked"], arrays, cfg, variant=im.input_variant(ctx.settings.variant),
                                       device=ctx.device, amp=ctx.amp) if own else [[] for _ in arrays]
        taus = [[r.tau for r in a] for a in phase_a] if own else [tau] * len(arrays)
        results = run_pooled(networks, arrays, tau=taus, variant=ctx.settings.variant, params=params,
                             device=ctx.device, amp=ctx.amp)
        out = {}
        for (name, piece), res, a in zip(pieces.items(), results, phase_a):
            mode = "single_step" if im.single_step(ctx.settings.variant) else "calibration"
            record = {"kind": piece["kind"], "tau": tau, "threshold": mode, "tau_percentile": tau_percentile,
                      "first_step_percentile": params["first_percentile"], "tol": params["tol"],
                      "max_iterations": params["max_iterations"], "batch_size": params["batch_size"],
                      "seeds": piece["arrays"][3], "field_of_view_mm": piece.get("field_of_view_mm"),
                      "iterations": [q.iterations for q in res], "shrinks": [q.shrinks for q in res],
                      "converged": [q.converged for q in res]}
            if own:
                record.update(subject.record(a, piece["kind"], cfg, tau))
            out[name] = _output(inputs[name], piece, res, record, cfg["score"])
            _add_oracle(out[name], networks, inputs[name], piece, tau, ctx, name)
            ctx.log(f"[infer] {name}: {piece['kind']}, {len(res)} slice(s), tau {record['tau']:.4g} "
                    f"({record['threshold']}), mean iterations {np.mean([q.iterations for q in res]) if res else 0:.1f}")
        return out

    def rethreshold(self, networks: Mapping[str, Any], previous: Mapping[str, Any], tau: float,
                    ctx: InferenceContext) -> tuple[ConditionOutput, dict[str, Any]]:
        """The 2D procedure at ``tau`` in place of the calibration tau, with the original seeds."""
        from itermask.io.samples import read_item

        im.check_model_variant(previous["variant"], ctx.meta, ctx.model_path)
        inp = read_item(previous["inputs"], dataset=previous["dataset"], subject=previous["subject"])
        piece = _piece(inp, ctx.meta, ctx, previous["condition"], seeds=[int(s) for s in previous["seeds"]])
        params = {"first_percentile": float(previous["first_step_percentile"]), "tol": float(previous["tol"]),
                  "max_iterations": int(previous["max_iterations"]), "batch_size": int(previous["batch_size"])}
        (res,) = run_pooled(networks, [piece["arrays"]], tau=tau, variant=previous["variant"], params=params,
                            device=ctx.device, amp=ctx.amp)
        info = {"iterations": [q.iterations for q in res], "converged": [q.converged for q in res]}
        return _output(inp, piece, res, {}, previous["score_name"]), info


def _add_oracle(out: ConditionOutput, networks: Mapping[str, Any], inp: Any, piece: dict[str, Any], tau: float,
                ctx: InferenceContext, name: str) -> None:
    """The per-image-best oracle (``itermask.core.oracle``) on labelled slices: ``mask_oracle``
    and record ``oracle`` per slice (it uses the test label); test conditions only."""
    import torch

    from itermask.core.oracle import oracle_2d

    cfg = ctx.settings.infer
    factors = [float(f) for f in cfg["oracle_tau_factors"]]
    firsts = [float(p) for p in cfg["oracle_first_step_percentiles"]]
    label = getattr(inp, "label", None)
    if (ctx.condition(name) not in ORACLE_CONDITIONS or piece["kind"] != "2d" or label is None or not label.any()
            or not factors or not firsts or im.single_step(ctx.settings.variant)):
        return
    seeds = [ctx.seed(name, "oracle", int(z)) for z in inp.index]
    best = oracle_2d(networks["first"], networks["masked"], *(torch.from_numpy(a) for a in
                     (inp.image, inp.hf, inp.brain, label)), seeds, tau=tau, first_percentiles=firsts,
                     factors=factors, variant=im.input_variant(ctx.settings.variant), device=ctx.device,
                     tol=float(cfg["tol"]), max_iterations=int(cfg["max_iterations"]), amp=ctx.amp)
    out.arrays["mask_oracle"] = np.moveaxis(np.stack([b.mask.numpy() for b in best]), 0, -1)
    out.record["oracle"] = {"uses_test_labels": True, "base_tau": tau, "tau_factors": factors,
                            "first_step_percentiles": firsts, "seeds": seeds,
                            "per_slice": [{"tau": b.tau, "iteration": b.iteration, "dice": b.dice,
                                           "first_step_percentile": b.first_step_percentile} for b in best]}


def _params(cfg: Mapping[str, Any], variant: str) -> dict[str, Any]:
    return {"first_percentile": float(cfg["first_step_percentile"]), "tol": float(cfg["tol"]),
            "max_iterations": int(cfg["max_iterations"]),
            "batch_size": int(cfg["batch_size"])}


def _model_size(meta: Mapping[str, Any], model_path: str) -> int:
    """Training slice size (px) of the model: meta network.image_size."""
    value = (meta.get("network") or {}).get("image_size")
    if value is None:
        raise InputError("IterMask2 model meta has no image size (network.image_size)", path=model_path)
    return int(value)


def _piece(inp: Any, meta: Mapping[str, Any], ctx: InferenceContext, name: str,
           seeds: list[int] | None = None) -> dict[str, Any]:
    """Slices to run for one input: a slices file as it is, a volume slice-wise."""
    from itermask.inference.slicewise import volume_to_slices
    from itermask.io.samples import Slices

    size = _model_size(meta, ctx.model_path)
    if isinstance(inp, Slices):
        if inp.image.shape[1:] != (size, size):
            raise InputError(f"slices are {inp.image.shape[1:]}, the model expects {size}x{size}",
                             path=inp.paths["slices"])
        empty = np.flatnonzero(~inp.has_brain)
        if empty.size:
            raise InputError(f"slices {inp.index[empty].tolist()} have an empty brain mask", path=inp.paths["slices"])
        seeds = seeds or [ctx.seed(name, int(z)) for z in inp.index]
        return {"kind": "2d", "arrays": (inp.image, inp.hf, inp.brain, seeds)}
    if ctx.field_of_view_mm is None:
        raise InputError("no 2D field of view (preprocess.slices2d.field_of_view_mm) to run on a volume",
                         path=inp.paths["image"])
    sl = volume_to_slices(inp, size, int(meta["hf_radius"]), float(ctx.field_of_view_mm))
    seeds = seeds or [ctx.seed(name, int(z)) for z in sl["z"]]
    return {"kind": "slicewise", "slices": sl, "arrays": (sl["image"], sl["hf"], sl["brain"], seeds),
            "field_of_view_mm": float(ctx.field_of_view_mm)}


def _output(inp: Any, piece: dict[str, Any], res: list[Any], record: dict[str, Any], score: str) -> ConditionOutput:
    """Arrays and record of one input: slice-wise results back on the volume grid, or an
    (H, W, n) stack of the slices (the slices file's affine: real pixel spacing; axial indices in
    ``slices``); a left-out test subject (no slice) has a record and no arrays."""
    from itermask.inference.outputs import detection_scores
    from itermask.inference.slicewise import slices_to_volume

    if piece["kind"] == "slicewise":
        vol = slices_to_volume(inp, piece["slices"], res)
        record = {**record, "inputs": inp.paths, "slices": piece["slices"]["z"].tolist(), "units": "scaled_2d",
                  **detection_scores(vol["error"], vol["mask"], inp.brain, score)}
        arrays = {**vol, "input2d": piece["slices"]["scaled"], "brainmask": inp.brain, "label": inp.label}
        return ConditionOutput(arrays, inp.affine, record)

    def hwn(a: np.ndarray) -> np.ndarray:
        return np.moveaxis(a, 0, -1)

    if not res:
        record = {**record, "inputs": inp.paths, "slices": [], "role": inp.role,
                  "left_out_reason": inp.left_out_reason or "no slice"}
        return ConditionOutput({}, inp.affine, record)

    error = np.stack([q.error.numpy() for q in res])
    mask = np.stack([q.mask.numpy() for q in res])
    per_slice = [detection_scores(error[i], mask[i], inp.brain[i], score)["scores"] for i in range(len(res))]
    record = {**record, "inputs": inp.paths, "slices": inp.index.tolist(), "role": inp.role,
              "per_slice_scores": per_slice, **detection_scores(error, mask, inp.brain, score)}
    arrays = {"recon": hwn(np.stack([q.recon.numpy() for q in res])), "error": hwn(error), "mask": hwn(mask),
              "brainmask": hwn(inp.brain), "label": None if inp.label is None else hwn(inp.label)}
    return ConditionOutput(arrays, inp.affine, record)


def run_pooled(networks: Mapping[str, Any], pieces: list[tuple], *, tau: float | list[Any], variant: str,
               params: Mapping[str, Any], device: Any, amp: bool) -> list[list[Any]]:
    """IterMask2 on the slices of several inputs in one lockstep pool; results split per input.
    ``tau``: one for every slice, or per input one tau or a list of per-slice taus."""
    from itermask.core.iterative_mask_2d import run_itermask2

    if sum(len(p[0]) for p in pieces) == 0:
        return [[] for _ in pieces]
    per_input = tau if isinstance(tau, list) else [tau] * len(pieces)
    taus = [float(t) for p, tp in zip(pieces, per_input, strict=True)
            for t in (tp if isinstance(tp, list) else [tp] * len(p[0]))]
    (images, hfs, brains), seeds, sizes = subject.pool(pieces)
    res = run_itermask2(networks["first"], networks["masked"], images, hfs, brains, seeds, tau=taus,
                        variant=im.input_variant(variant), device=device, single_step=im.single_step(variant),
                        amp=amp, **params)
    return subject.split(res, sizes)


METHOD = IterMask2()
