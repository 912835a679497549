"""What a subject's one preprocessing job writes besides its images (rules/preprocess.smk), from
the study alone, at parse time: its label (subjects with one), the 2D slice files at the default
slice radius (``preprocess.slices2d.hf_radius``) that some experiment reads from its dataset,
and regexes that tell a dataset's labelled subjects from the others (one rule each, since a
rule's outputs are fixed patterns)."""
from __future__ import annotations

import re
from typing import Iterable

from itermask.config.conditions import FAILED_SKULLSTRIP
from itermask.config.datasets import Dataset

#: slices2d role of a split: "train" (central range, no lesion), "test" (the largest-lesion
#: slice), any other split "all" (every slice with brain)
SLICE_ROLES = {"train": "train", "val": "train", "val_lesion": "test", "test_lesion": "test"}


def slice_role(split: str) -> str:
    return SLICE_ROLES.get(split, "all")


def labelled_subjects(d: Dataset) -> list[str]:
    return [s for split, ids in d.splits.items() if d.has_labels(split) for s in ids]


def slice_reads(study) -> set[tuple[str, str, str]]:
    """(dataset, split, sequence) of every slice file at the default slice radius that a
    training job (train and val subjects) or an inference condition reads. A condition depends on
    the subject's split only, so one subject per split stands for the split."""
    radius = study.preprocess.slices2d.hf_radius
    reads: set[tuple[str, str, str]] = set()

    def add(spec, s, dataset: str, splits: Iterable[str]) -> None:
        if spec.kind == "slices":
            reads.update((dataset, split, q) for split in splits for q in (s.sequence, *spec.sequences))

    for name in study.experiments:
        s = study.settings(name)
        if s.hf_radius != radius:  # rule slices2d makes those
            continue
        if s.model_owner == name:
            add(study.train_spec(name), s, s.dataset, ("train", "val"))
        for d in dict.fromkeys((s.dataset, *s.segment, *s.detect)):
            for split, ids in study.datasets[d].splits.items():
                for condition in study.conditions(name, d, ids[0]) if ids else ():
                    add(study.condition_spec(name, condition), s, d, (split,))
            derived = study.failed_strip_dataset(d) if d in s.detect else None
            if derived:
                add(study.condition_spec(name, FAILED_SKULLSTRIP), s, derived, ("test_healthy",))
    return reads


def slice_sequences(study) -> dict[tuple[str, bool], tuple[str, ...]]:
    """(dataset, labelled) -> the sequences whose default-radius slices the preprocessing job of
    those subjects writes (in the dataset's order; empty: none)."""
    reads = slice_reads(study)
    out = {}
    for d in study.datasets.values():
        for labelled in (False, True):
            splits = {split for split in d.splits if d.has_labels(split) == labelled}
            out[(d.name, labelled)] = tuple(q for q in d.sequences
                                            if any((d.name, split, q) in reads for split in splits))
    return out


def id_pattern(ids: Iterable[str]) -> str:
    """A regex that matches exactly the given IDs, as a trie of alternations (matching one ID
    costs its length, not the number of IDs); ``(?!)`` (matches nothing) for none."""
    trie: dict = {}
    for i in sorted(set(ids)):
        node = trie
        for ch in i:
            node = node.setdefault(ch, {})
        node[""] = {}
    return _trie_regex(trie) if trie else "(?!)"


def _trie_regex(node: dict) -> str:
    alternatives = [re.escape(ch) + _trie_regex(child) for ch, child in sorted(node.items()) if ch]
    if not alternatives:
        return ""
    body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
    if "" in node:
        return f"(?:{body})?"
    return body
