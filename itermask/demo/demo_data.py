"""The embedded demo dataset: raw, unstripped, non-RAS T1w/FLAIR/T2w heads with lesions.

The stage (rule demo_data) writes every subject of the configured splits and a
participants.tsv. The parts, one module each in itermask.demo:

- ``anatomy``: template anatomy from pip wheels (nilearn MNI152 brain, pydeface head),
  aligned once per process (``load_anatomy``);
- ``subject``: one subject's sequences on an oblique scanner grid (``synthesize_subject``):
  pose, smooth warp, tissue contrast, bias field, Rician noise;
- ``lesion``: the irregular lesion of a ``test_lesion`` or ``val_lesion`` subject;
- ``randomness``: per-(seed, subject) random streams and smooth random fields;
- ``geometry``: voxel grids in mm, trilinear sampling, pooling, rotations.
"""
from __future__ import annotations

import string
from pathlib import Path

import numpy as np

from itermask.config.datasets import LESION_SPLITS
from itermask.demo.anatomy import load_anatomy
from itermask.demo.subject import check_sequences, synthesize_subject
from itermask.errors import ConfigError
from itermask.io.atomic import write_text
from itermask.io.nifti import save_nifti


def _check_pattern(pattern: str, fields: set[str], what: str) -> None:
    names = {f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None}
    if not fields <= names or names - fields:
        raise ConfigError(f"demo {what} '{pattern}' must use exactly the placeholders "
                          f"{sorted('{' + f + '}' for f in fields)}, found {sorted(names)}")


def dataset_root(pattern: str) -> Path:
    """The folder above the first path component that contains ``{subject}``."""
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if "{subject}" in part:
            return Path(*parts[:i]) if i else Path(".")
    raise ConfigError(f"pattern '{pattern}' has no {{subject}} placeholder")


def _split_of_subjects(splits: dict[str, list[str]]) -> dict[str, str]:
    """{subject: split} in the order of the splits; a subject in two splits raises ConfigError."""
    seen: dict[str, str] = {}
    for split, ids in splits.items():
        for s in ids:
            if s in seen:
                raise ConfigError(f"demo subject '{s}' is in splits '{seen[s]}' and '{split}'")
            seen[s] = split
    return seen


def generate_demo(pattern: str, label_pattern: str, splits: dict[str, list[str]], sequences: list[str], *,
                  voxel_size_mm: float = 2.0, lesion_volumes_ml: list[float] = (0.5, 2.0, 8.0, 25.0),
                  seed: int = 0) -> list[Path]:
    """Write every subject's sequences (+ label for ``val_lesion`` and ``test_lesion``) and
    participants.tsv.

    Lesion sizes cycle through ``lesion_volumes_ml`` in the order of each lesion split's list.
    Returns the written paths (images, labels, participants.tsv).
    """
    _check_pattern(pattern, {"subject", "sequence"}, "pattern")
    _check_pattern(label_pattern, {"subject"}, "label_pattern")
    check_sequences(sequences)
    volumes = [float(v) for v in lesion_volumes_ml]
    if not volumes or min(volumes) <= 0:
        raise ConfigError(f"demo lesion_volumes_ml must be positive numbers, got {list(lesion_volumes_ml)}")
    seen = _split_of_subjects(splits)
    lesion_of = {s: volumes[i % len(volumes)] for split in LESION_SPLITS for i, s in enumerate(splits.get(split, []))}

    anatomy = load_anatomy(voxel_size_mm)
    written: list[Path] = []
    rows = ["subject\tsplit\tlesion_target_ml\tlesion_volume_ml"]
    for subject, split in seen.items():
        sub = synthesize_subject(anatomy, subject, list(sequences), voxel_size_mm=voxel_size_mm,
                                 lesion_ml=lesion_of.get(subject), seed=seed)
        for seq, img in sub.images.items():
            path = Path(pattern.format(subject=subject, sequence=seq))
            save_nifti(img, sub.affine, path, dtype=np.int16)
            written.append(path)
        if sub.label is not None:
            path = Path(label_pattern.format(subject=subject))
            save_nifti(sub.label, sub.affine, path, dtype=np.uint8)
            written.append(path)
        target = f"{lesion_of[subject]:g}" if subject in lesion_of else "n/a"
        rows.append(f"{subject}\t{split}\t{target}\t{sub.lesion_volume_ml:.3f}")
    tsv = dataset_root(pattern) / "participants.tsv"
    write_text(tsv, "\n".join(rows) + "\n")
    written.append(tsv)
    return written
