"""How the honest protocol's theta hangs on which labelled validation subjects set it.

The demo's ``labelled_val`` honest protocol (``evaluation.honest_source``) thresholds each test
subject's final error map at the theta of best mean Dice on the ``val_lesion`` subjects. With few
of them, one subject whose lesion the subject-specific tau lost can pull theta down for every
test subject. This runs IterMask3D with the experiment's settings once on every given lesioned
subject (phase A, the tau rule, phase B, as the pipeline's inference), then draws ``--draws``
random validation sets of ``--per-size`` subjects from each lesion-size group (the nearest of the
config's ``demo.lesion_volumes_ml`` to the label's volume), sets theta on them and prints the mean
honest Dice of the other subjects: mean, SD and minimum over the draws, and the median theta.
``--val`` names one fixed validation set (e.g. the config's ``val_lesion``) to print beside.
Asserts nothing.

    .venv/bin/python benchmarks/honest_split.py --model results/models/im3d_flair_seg/model.pt \\
        --preproc /tmp/tune/results/preproc/demo --subjects v01 v02 ... v16 d19 d20 d21 d22 \\
        --experiment im3d_flair_seg --per-size 1 2 --val d19 d20 d21 d22
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from gamma_sweep import dice, forward_amp, load_subjects  # noqa: E402

from itermask.config.study import Study, load_config  # noqa: E402
from itermask.core.iterative_mask_3d import run_itermask3d  # noqa: E402
from itermask.evaluation.protocols import binarise, labelled_threshold  # noqa: E402
from itermask.inference.model import load_trained  # noqa: E402
from itermask.methods._itermask import input_variant, phase_a_schedule  # noqa: E402
from itermask.methods._itermask import chooser  # noqa: E402


def size_groups(volumes_ml: list[float], sizes_ml: list[float]) -> list[int]:
    """Index of the nearest configured lesion size (in log volume) of each subject's lesion."""
    logs = np.log(np.asarray(sizes_ml, dtype=float))
    return [int(np.argmin(np.abs(logs - np.log(max(v, 1e-9))))) for v in volumes_ml]


def honest_dice(errors: list[np.ndarray], labels: list[np.ndarray], brains: list[np.ndarray],
                val: list[int], test: list[int]) -> tuple[float, float]:
    """(theta, mean Dice over ``test``): theta of best mean Dice on ``val`` (``labelled_threshold``)."""
    theta = labelled_threshold([errors[i][brains[i]] for i in val], [labels[i][brains[i]] for i in val])
    return theta, float(np.mean([dice(binarise(errors[i], brains[i], theta), torch.from_numpy(labels[i]))
                                 for i in test]))


def random_splits(groups: list[int], per_size: int, draws: int, seed: int) -> list[list[int]]:
    """``draws`` validation sets of ``per_size`` subjects from every size group (seeded)."""
    rng = np.random.default_rng(seed)
    members = {g: [i for i, h in enumerate(groups) if h == g] for g in sorted(set(groups))}
    if any(len(m) <= per_size for m in members.values()):
        raise SystemExit(f"honest_split: every size group needs more than --per-size {per_size} subjects "
                         f"(groups: { {g: len(m) for g, m in members.items()} })")
    return [sorted(int(i) for m in members.values() for i in rng.choice(m, per_size, replace=False))
            for _ in range(draws)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a trained itermask3d model file")
    ap.add_argument("--preproc", required=True, help="folder with sub-<id>/{<sequence>.nii.gz, HF, brainmask, label}")
    ap.add_argument("--subjects", nargs="+", required=True, help="lesioned subjects (labelled)")
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--config", default=str(ROOT / "config.yaml"))
    ap.add_argument("--per-size", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--draws", type=int, default=30)
    ap.add_argument("--val", nargs="*", default=[], help="a fixed validation set, printed beside the draws")
    ap.add_argument("--seed-offset", type=int, default=0, help="subject k's noise seed is offset + k")
    ap.add_argument("--precision", choices=["auto", "fp32"], default=None,
                    help="forward passes: the config's precision unless given (auto: bf16 where the CPU has it)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    study = Study(load_config(args.config), base_dir=ROOT)
    settings = study.settings(args.experiment)
    cfg = settings.infer
    nets, meta = load_trained(args.model, "cpu", channels_last=True)
    variant = input_variant(settings.variant)
    folders = [Path(args.preproc) / f"sub-{s}" for s in args.subjects]
    x, hf, brain, label = load_subjects(folders, settings.sequence, meta["hf_radius"], variant, len(folders))
    voxel_ml = [float(np.prod(nib.load(f / "label.nii.gz").header.get_zooms()[:3])) / 1000 for f in folders]
    groups = size_groups([float(lab.sum()) * v for lab, v in zip(label, voxel_ml)],
                         list(study.config["demo"]["lesion_volumes_ml"]))
    t = np.asarray(phase_a_schedule(cfg))
    results = run_itermask3d(nets["masked"], x, hf, brain, [args.seed_offset + k for k in range(len(x))],
                             percents=t, choose_tau=chooser(cfg, t), variant=variant, tol=float(cfg["tol"]),
                             max_iterations=int(cfg["max_iterations"]), batch_size=4, device="cpu",
                             amp=forward_amp(study.config, args.precision),
                             phase_b_noise=cfg["phase_b_noise"], phase_b_start=cfg["phase_b_start"])
    errors = [r.error.numpy() for r in results]
    labels, brains = [lab.numpy() for lab in label], [b.numpy() for b in brain]
    print(f"{args.experiment}: iterative-mask Dice "
          + " ".join(f"{s}:{dice(r.mask, lab):.2f}(size {g})" for s, r, lab, g in zip(args.subjects, results, label, groups)))
    everyone = list(range(len(x)))
    if args.val:
        val = [args.subjects.index(s) for s in args.val]
        theta, score = honest_dice(errors, labels, brains, val, [i for i in everyone if i not in val])
        print(f"fixed validation set {' '.join(args.val)}: theta {theta:.2f}, honest Dice of the others {score:.3f}")
    for k in args.per_size:
        runs = np.array([honest_dice(errors, labels, brains, val, [i for i in everyone if i not in val])
                         for val in random_splits(groups, k, args.draws, seed=k)])
        print(f"{k} per size ({args.draws} draws): honest Dice of the others mean {runs[:, 1].mean():.3f}, "
              f"SD {runs[:, 1].std():.3f}, min {runs[:, 1].min():.3f}; median theta {np.median(runs[:, 0]):.2f}",
              flush=True)


if __name__ == "__main__":
    main()
