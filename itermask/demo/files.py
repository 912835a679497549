"""The files of the demo dataset that rule demo_data writes, worked out from its validated
`Dataset` (light: the Snakefile imports it while it plans, without torch).

Image and label paths are the dataset's own (``Dataset.image`` with its ``sequence_names``,
``Dataset.label`` for the labelled splits); ``participants.tsv`` lies in the dataset's root,
the folder above the first path component of the pattern that holds ``{subject}``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from itermask.config.datasets import Dataset
from itermask.errors import ConfigError


def dataset_root(pattern: str) -> Path:
    """The folder above the first path component that contains ``{subject}``."""
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if "{subject}" in part:
            return Path(*parts[:i]) if i else Path(".")
    raise ConfigError(f"pattern '{pattern}' has no {{subject}} placeholder")


def demo_files(d: Dataset) -> dict[str, Any]:
    """Arguments of `itermask.demo.demo_data.generate_demo` for dataset ``d`` (plain lists,
    dicts and strings, as a rule's params): ``splits`` (split -> subjects), ``images``
    (subject -> sequence -> path), ``labels`` (subject -> path, labelled subjects) and
    ``participants_tsv``."""
    return {
        "splits": {split: list(subjects) for split, subjects in d.splits.items()},
        "images": {s: {q: d.image(s, q) for q in d.sequences} for s in d.subjects},
        "labels": {s: d.label(s) for s in d.subjects if d.label(s)},
        "participants_tsv": str(dataset_root(d.pattern) / "participants.tsv"),
    }


def demo_outputs(files: dict[str, Any]) -> list[str]:
    """The dataset's files that ``generate_demo`` writes for ``files`` (a `demo_files` result):
    the images, then the labels (participants.tsv aside)."""
    images = [p for per_subject in files["images"].values() for p in per_subject.values()]
    return images + list(files["labels"].values())
