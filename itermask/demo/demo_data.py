"""The embedded demo dataset: raw, unstripped, non-RAS T1w/FLAIR/T2w heads with lesions.

The stage (rule demo_data, ``generate_demo``) writes every subject of the configured splits
and a participants.tsv to the paths it is given; ``workers`` threads synthesise and write the
subjects side by side (the heavy numpy/scipy/torch/zlib work releases the GIL; every subject
has its own random streams, so the files do not depend on ``workers``). The parts, one module
each in itermask.demo:

- ``files``: those paths for a dataset of the config (the rule's outputs and params);

- ``anatomy``: template anatomy from pip wheels (nilearn MNI152 brain, pydeface head),
  aligned once per process (``load_anatomy``);
- ``subject``: one subject's sequences on an oblique scanner grid (``synthesize_subject``):
  pose, smooth warp, tissue contrast, bias field, Rician noise;
- ``lesion``: the irregular lesion of a ``test_lesion`` or ``val_lesion`` subject;
- ``randomness``: per-(seed, subject) random streams and smooth random fields;
- ``geometry``: voxel grids in mm, trilinear sampling, pooling, rotations.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Mapping, Sequence, TypeVar

import numpy as np

from itermask.config.datasets import LESION_SPLITS
from itermask.demo.anatomy import Anatomy, load_anatomy
from itermask.demo.files import dataset_root
from itermask.demo.subject import check_sequences, synthesize_subject
from itermask.errors import ConfigError
from itermask.io.atomic import write_text
from itermask.io.nifti import save_nifti

__all__ = ["dataset_root", "generate_demo"]

T = TypeVar("T")
R = TypeVar("R")


def _split_of_subjects(splits: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """{subject: split} in the order of the splits; a subject in two splits raises ConfigError."""
    seen: dict[str, str] = {}
    for split, ids in splits.items():
        for s in ids:
            if s in seen:
                raise ConfigError(f"demo subject '{s}' is in splits '{seen[s]}' and '{split}'")
            seen[s] = split
    return seen


def _check_files(seen: Mapping[str, str], images: Mapping[str, Mapping[str, str]], labels: Mapping[str, str]) -> None:
    """ConfigError when the image paths do not cover exactly the split subjects, when a label
    path names no subject, or when a lesion subject has no label path."""
    if set(images) != set(seen):
        raise ConfigError(f"demo images given for subjects {sorted(images)}, the splits hold {sorted(seen)}")
    for subject, sequences in images.items():
        if not sequences:
            raise ConfigError(f"demo subject '{subject}' has no sequences")
        check_sequences(list(sequences))
    if set(labels) - set(seen):
        raise ConfigError(f"demo label paths for subjects {sorted(set(labels) - set(seen))} outside the splits")
    unlabelled = sorted(s for s, split in seen.items() if split in LESION_SPLITS and s not in labels)
    if unlabelled:
        raise ConfigError(f"demo lesion subjects {unlabelled} have no label path")


def _in_order(work: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``work`` of every item, in the items' order, on ``workers`` threads (1: in this thread).
    The first error of an item is raised here, after the items not yet started are cancelled."""
    if workers == 1 or len(items) < 2:
        return [work(x) for x in items]
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="demo_data")
    try:
        return list(pool.map(work, items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_subject(anatomy: Anatomy, subject: str, split: str, images: Mapping[str, str], label: str | None, *,
                   voxel_size_mm: float, lesion_ml: float | None, seed: int) -> tuple[list[Path], str]:
    """Synthesise one subject, write its ``images`` (sequence -> path) and ``label`` (a path or
    None); return the written paths and the subject's participants.tsv row."""
    sub = synthesize_subject(anatomy, subject, list(images), voxel_size_mm=voxel_size_mm,
                             lesion_ml=lesion_ml, seed=seed)
    written: list[Path] = []
    for seq, img in sub.images.items():
        path = Path(images[seq])
        save_nifti(img, sub.affine, path, dtype=np.int16)
        written.append(path)
    if label is not None:
        mask = sub.label if sub.label is not None else np.zeros(sub.brain_mask.shape, np.uint8)
        save_nifti(mask, sub.affine, label, dtype=np.uint8)
        written.append(Path(label))
    target = "n/a" if lesion_ml is None else f"{lesion_ml:g}"
    return written, f"{subject}\t{split}\t{target}\t{sub.lesion_volume_ml:.3f}"


def generate_demo(splits: Mapping[str, Sequence[str]], images: Mapping[str, Mapping[str, str]],
                  labels: Mapping[str, str], participants_tsv: str, *, voxel_size_mm: float,
                  lesion_volumes_ml: Sequence[float], seed: int, workers: int = 1) -> list[Path]:
    """Stage: write every subject's sequences, its label and ``participants_tsv``.

    ``splits``: split -> subject IDs; ``images``: subject -> sequence (a contrast the generator
    knows) -> output path; ``labels``: subject -> label path, required for the lesion subjects
    (``val_lesion``, ``test_lesion``); another subject with a label path gets an all-zero label.
    (``itermask.demo.files.demo_files`` gives all of them for a dataset.) Lesion sizes cycle
    through ``lesion_volumes_ml`` in the order of each lesion split's list. ``workers``: threads
    that synthesise and write subjects at once (the same files for any number).
    Returns the written paths (images, labels, participants.tsv).
    """
    volumes = [float(v) for v in lesion_volumes_ml]
    if not volumes or min(volumes) <= 0:
        raise ConfigError(f"demo lesion_volumes_ml must be positive numbers, got {list(lesion_volumes_ml)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"demo workers must be a positive integer, got {workers!r}")
    seen = _split_of_subjects(splits)
    _check_files(seen, images, labels)
    lesion_of = {s: volumes[i % len(volumes)] for split in LESION_SPLITS for i, s in enumerate(splits.get(split, []))}

    anatomy = load_anatomy(voxel_size_mm)

    def work(item: tuple[str, str]) -> tuple[list[Path], str]:
        subject, split = item
        return _write_subject(anatomy, subject, split, images[subject], labels.get(subject),
                              voxel_size_mm=voxel_size_mm, lesion_ml=lesion_of.get(subject), seed=seed)

    done = _in_order(work, list(seen.items()), workers)
    written = [path for paths, _ in done for path in paths]
    rows = ["subject\tsplit\tlesion_target_ml\tlesion_volume_ml", *(row for _, row in done)]
    write_text(participants_tsv, "\n".join(rows) + "\n")
    written.append(Path(participants_tsv))
    return written
