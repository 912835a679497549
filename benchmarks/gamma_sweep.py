"""IterMask3D's subject-specific tau against gamma, on lesioned subjects of your choice.

How the demo's segmentation gamma (config.yaml, im3d_flair_seg) was chosen: on lesioned
subjects that are not in the test set. Generate them with the demo generator (a copy of the
repository whose config lists them, e.g. ``test_lesion: [v01, ..., v08]``, then
``snakemake <results>/preproc/demo/sub-v01/label.nii.gz ...`` with their HF images at the
model's radius), then run this with the trained model. For each gamma it runs phase A once per
subject with the experiment's settings (step_percent, fine_from_percent, y_limit, r2_min,
k_fallback), takes tau from the threshold curve, runs phase B and prints each subject's Dice of
the final mask, its tau, and the mean. With ``--val`` (healthy validation subjects) it also runs
them at each gamma and prints the ``honest`` protocol's Dice: the final error map thresholded at
the validation errors' (1 - honest_fpr) quantile, as the pipeline's evaluation does
(``honest_source: healthy_fpr``). With ``--val-lesion`` (labelled validation subjects, e.g. the
``val_lesion`` split) it prints the ``labelled_val`` honest protocol: the theta of best mean Dice
on those subjects, applied to the others. ``--seed-offset`` moves every subject's noise seed (the
subjects get offset, offset + 1, ...): rerun with a few offsets to see how much a result hangs on
the noise draws. ``--curve-scale-percent`` and ``--y-limit`` replace the
experiment's curve scale and y-limit (``--curve-scale-percent none --gammas 2 2.5 --y-limit 10``: the rule in error
units). ``--fine-from`` and ``--fine-step`` replace the experiment's phase-A tail (e.g.
``--fine-from 95 --fine-step 0.5``: 5 % steps to 95 %, then 0.5 % steps): how the curve's
resolution where it turns upwards moves tau. With
``--taus`` it also runs phase B at each of these fixed taus (the same tau for every subject): how
far the subject-specific rule's tau is from the tau the error maps would need. The network gets
the experiment's input (``no_freq``: no HF image, none read), as the pipeline's inference does; a
single-step experiment (``no_spatial``: no phase A, so no tau to sweep), another method, or a model
of the other input variant is refused (exit 1). The forward passes follow the config's ``precision``
as the pipeline's inference does (``auto``: bf16 on a CPU with bf16 in hardware; ``--precision fp32``
replaces it): the threshold curves, and so the rule's tau, move with the precision. Asserts nothing.

    .venv/bin/python benchmarks/gamma_sweep.py --model results/models/im3d_flair_seg/model.pt \\
        --preproc /tmp/tune/results/preproc/demo --subjects v01 v02 v03 v04 v05 v06 v07 v08 \\
        --experiment im3d_flair_seg --gammas 1.5 2 3 --val d07 d08 --taus 6 8 10
    .venv/bin/python benchmarks/gamma_sweep.py --model results/models/im3d_flair_seg/model.pt \\
        --preproc results/preproc/demo --subjects d11 d12 d13 d14 d15 d16 d17 d18 \\
        --val-lesion d19 d20 d21 d22 --experiment im3d_flair_seg --gammas 2 --seed-offset 100
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from itermask.config.study import Study, load_config  # noqa: E402
from itermask.core.iterative_mask_3d import phase_a_percents, run_itermask3d  # noqa: E402
from itermask.errors import InputError  # noqa: E402
from itermask.evaluation.metrics import overlap_metrics  # noqa: E402
from itermask.evaluation.protocols import binarise, honest_threshold, labelled_threshold  # noqa: E402
from itermask.inference.model import load_trained  # noqa: E402
from itermask.io.workflow import config_amp  # noqa: E402
from itermask.methods._itermask import check_model_variant, input_variant, phase_a_schedule, single_step  # noqa: E402
from itermask.methods._itermask import chooser  # noqa: E402


def dice(pred: torch.Tensor | np.ndarray, label: torch.Tensor) -> float:
    """The evaluation's Dice (itermask.evaluation.metrics)."""
    return overlap_metrics(np.asarray(pred, dtype=bool), label.numpy())["dice"]


def load(folder: Path, name: str) -> torch.Tensor:
    return torch.from_numpy(np.asarray(nib.load(folder / name).dataobj, dtype=np.float32))


def forward_amp(config: dict, precision: str | None) -> bool:
    """Autocast on the forward passes as the pipeline's inference has it (``precision: auto``:
    bf16 on a CPU with bf16 in hardware, ``itermask.io.device.autocast_dtype``), unless
    ``precision`` (``auto`` | ``fp32``) replaces the config's: tau chosen here then applies to the
    reconstructions the pipeline makes."""
    return config_amp(config if precision is None else {"precision": precision})


def load_subjects(folders: list[Path], sequence: str, hf_radius: int, variant: str,
                  n_labelled: int) -> tuple[list[torch.Tensor], ...]:
    """Images, HF images at the model's radius (zeros for a no_freq network, which never sees
    one: no file read), brain masks, and the labels of the first ``n_labelled`` folders."""
    x = [load(f, f"{sequence}.nii.gz") for f in folders]
    hf = [torch.zeros_like(v) if variant == "no_freq" else load(f, f"{sequence}_hf-r{hf_radius}.nii.gz")
          for f, v in zip(folders, x)]
    brain = [load(f, "brainmask.nii.gz") > 0 for f in folders]
    label = [load(f, "label.nii.gz") > 0 for f in folders[:n_labelled]]
    return x, hf, brain, label


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a trained itermask3d model file")
    ap.add_argument("--preproc", required=True, help="folder with sub-<id>/{<sequence>.nii.gz, HF, brainmask, label}")
    ap.add_argument("--subjects", nargs="+", required=True)
    ap.add_argument("--experiment", required=True, help="the experiment whose infer settings apply")
    ap.add_argument("--config", default=str(ROOT / "config.yaml"))
    ap.add_argument("--gammas", nargs="+", type=float, required=True)
    ap.add_argument("--taus", nargs="*", type=float, default=[], help="fixed taus to compare with (phase B only)")
    ap.add_argument("--val", nargs="*", default=[], help="healthy validation subjects: adds the honest protocol")
    ap.add_argument("--val-lesion", nargs="*", default=[],
                    help="labelled validation subjects: adds the labelled_val honest protocol")
    ap.add_argument("--seed-offset", type=int, default=0, help="subject k's noise seed is offset + k")
    ap.add_argument("--fine-from", type=float, default=None,
                    help="phase A: from this %% on, steps of --fine-step (default: the experiment's schedule)")
    ap.add_argument("--fine-step", type=float, default=None, help="phase A's step (%%) from --fine-from to 100")
    ap.add_argument("--r2-min", type=float, default=None,
                    help="the tangent fit's R^2 below which the smoothed derivative is used (default: the experiment's)")
    ap.add_argument("--curve-scale-percent", default=None, type=lambda v: "none" if v == "none" else float(v),
                    help="replace infer.curve_scale_percent: a percent (gamma and y_limit in units of the curve's "
                         "value there) or 'none' (error units, the reference's)")
    ap.add_argument("--y-limit", type=float, default=None, help="replace infer.y_limit (in the curve's units)")
    ap.add_argument("--phase-b-start", choices=["brain", "tau_mask"], default=None,
                    help="where phase B starts for the gamma rules (default: the experiment's infer.phase_b_start)")
    ap.add_argument("--precision", choices=["auto", "fp32"], default=None,
                    help="forward passes: the config's precision unless given (auto: bf16 where the CPU has it)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    study = Study(load_config(args.config), base_dir=ROOT)
    amp = forward_amp(study.config, args.precision)
    settings = study.settings(args.experiment)
    cfg = dict(settings.infer)
    if args.r2_min is not None:
        cfg["r2_min"] = args.r2_min
    if args.curve_scale_percent is not None:
        cfg["curve_scale_percent"] = None if args.curve_scale_percent == "none" else args.curve_scale_percent
    if args.y_limit is not None:
        cfg["y_limit"] = args.y_limit
    if settings.method != "itermask3d":
        raise SystemExit(f"gamma_sweep: experiment '{args.experiment}' uses method '{settings.method}', not itermask3d")
    if single_step(settings.variant):
        raise SystemExit(f"gamma_sweep: experiment '{args.experiment}' is the single-step variant "
                         f"'{settings.variant}' (no phase A, no tau from a curve): nothing to sweep")
    variant = input_variant(settings.variant)  # the network input, as itermask3d.run_volumes passes it
    fpr = float(study.config["evaluation"]["honest_fpr"])
    try:
        nets, meta = load_trained(args.model, "cpu", channels_last=True)
        if meta.get("method") != "itermask3d":
            raise InputError(f"model of method '{meta.get('method')}', not itermask3d", path=args.model)
        check_model_variant(settings.variant, meta, args.model)
    except InputError as exc:
        raise SystemExit(f"gamma_sweep: {exc}") from exc
    net = nets["masked"]
    n, nl = len(args.subjects), len(args.subjects) + len(args.val_lesion)
    names = list(args.subjects) + list(args.val_lesion) + list(args.val)  # labelled first, then healthy
    folders = [Path(args.preproc) / f"sub-{s}" for s in names]
    x, hf, brain, label = load_subjects(folders, settings.sequence, meta["hf_radius"], variant, nl)
    seeds = [args.seed_offset + k for k in range(len(folders))]
    t = np.asarray(schedule(cfg, args.fine_from, args.fine_step))
    # phase A only: its one phase-B step (tau 0, from the whole brain) is not used
    curves = [r.curve for r in run_itermask3d(net, x, hf, brain, seeds, percents=t, choose_tau=lambda c: (0.0, None),
                                              variant=variant, tol=float(cfg["tol"]), max_iterations=1,
                                              batch_size=len(x), device="cpu", amp=amp,
                                              phase_b_noise=cfg["phase_b_noise"], phase_b_start="brain")]
    hf_text = "no HF input" if variant == "no_freq" else f"HF radius {meta['hf_radius']}"
    print(f"{args.experiment}: {hf_text}, phase A {len(t)} iterations "
          f"({t[0]:g} .. {t[-1]:g} %); lesion voxels "
          + " ".join(f"{s}:{int(lab.sum())}" for s, lab in zip(names[:n], label))
          + ("; labelled validation " + " ".join(f"{s}:{int(lab.sum())}" for s, lab in zip(names[n:nl], label[n:]))
             if nl > n else ""))

    start = args.phase_b_start or cfg["phase_b_start"]

    def phase_b(taus: list[float], gamma: float | None) -> list:
        """Phase B at each subject's tau; from phase A's tau mask (phase A run again with the same
        noise draws) when a gamma rule's run starts there, else from the whole brain."""
        if gamma is not None and start == "tau_mask":
            return [run_itermask3d(net, [x[i]], [hf[i]], [brain[i]], [seeds[i]], percents=t,
                                   choose_tau=chooser({**cfg, "gamma": gamma}, t), variant=variant,
                                   tol=float(cfg["tol"]), max_iterations=int(cfg["max_iterations"]), batch_size=1,
                                   device="cpu", amp=amp, phase_b_noise=cfg["phase_b_noise"], phase_b_start=start)[0]
                    for i in range(len(taus))]
        return [run_itermask3d(net, [x[i]], [hf[i]], [brain[i]], [seeds[i]], percents=(),
                               choose_tau=lambda _c, tau=tau: (tau, None), variant=variant, tol=float(cfg["tol"]),
                               max_iterations=int(cfg["max_iterations"]), batch_size=1, device="cpu", amp=amp,
                               phase_b_noise=cfg["phase_b_noise"], phase_b_start="brain")[0]
                for i, tau in enumerate(taus)]

    rules = [(f"gamma {g:g}", [chooser({**cfg, "gamma": g}, t)(np.asarray(c, dtype=np.float64))[0] for c in curves], g)
             for g in args.gammas]  # the pipeline's rule at each gamma
    rules += [(f"fixed tau {tau:g}", [tau] * len(folders), None) for tau in args.taus]
    print(f"phase B starts from {'the tau mask (gamma rules)' if start == 'tau_mask' else 'the whole brain'}")
    for name, taus, gamma in rules:
        results = phase_b(taus, gamma)
        scores = [dice(r.mask, lab) for r, lab in zip(results[:n], label)]
        print(f"{name}: mean Dice {np.mean(scores):.3f} | "
              + " ".join(f"{s}:{d:.2f}(tau {r.tau:.3g})" for s, d, r in zip(args.subjects, scores, results)), flush=True)
        if args.val:
            theta = honest_threshold([r.error[b].numpy() for r, b in zip(results[nl:], brain[nl:])], fpr)
            _print_honest("honest", theta, results, brain, label, args.subjects)
        if args.val_lesion:
            theta = labelled_threshold([r.error[b].numpy() for r, b in zip(results[n:nl], brain[n:nl])],
                                       [lab[b].numpy() for lab, b in zip(label[n:], brain[n:nl])])
            _print_honest("honest labelled_val", theta, results, brain, label, args.subjects)


def schedule(cfg: dict, fine_from: float | None, fine_step: float | None) -> tuple[float, ...]:
    """The experiment's phase-A percents, or its coarse step with the given fine tail."""
    if fine_from is None and fine_step is None:
        return phase_a_schedule(cfg)
    start = cfg["fine_from_percent"] if fine_from is None else fine_from
    if start is None:
        raise SystemExit("--fine-step needs --fine-from (the experiment has no infer.fine_from_percent)")
    return phase_a_percents(float(cfg["step_percent"]), fine_from=start,
                            fine_step=1.0 if fine_step is None else fine_step)


def _print_honest(name: str, theta: float, results: list, brain: list, label: list, subjects: list[str]) -> None:
    """The subjects' Dice of their final error maps thresholded at ``theta``."""
    honest = [dice(binarise(r.error.numpy(), b.numpy(), theta), lab)
              for r, b, lab in zip(results, brain, label[:len(subjects)])]
    print(f"  {name} (theta {theta:.2f}): mean Dice {np.mean(honest):.3f} | "
          + " ".join(f"{s}:{d:.2f}" for s, d in zip(subjects, honest)), flush=True)


if __name__ == "__main__":
    main()
