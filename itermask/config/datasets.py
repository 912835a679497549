"""Datasets of the configuration: image/label path patterns, BIDS layouts, subject splits.

`resolve_dataset` turns one validated (defaults filled) ``datasets:`` entry into a `Dataset`
whose subjects are resolved from lists, split files or by globbing the pattern.
"""
from __future__ import annotations

import glob
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from itermask.errors import ConfigError

SPLITS = ("train", "val", "val_lesion", "test_healthy", "test_lesion", "test_anomalous")
LESION_SPLITS = ("val_lesion", "test_lesion")  # splits of lesioned subjects: their labels are read
SUBJECT_RE = re.compile(r"[A-Za-z0-9]+")  # used with fullmatch: no '$' before a final newline
SUBJECT_CHARS = "letters A-Z, a-z and digits 0-9 only (no spaces, '_', '-', '/', '.', ';' or newlines)"


def check_subject_ids(name: str, where: str, ids: list[str] | tuple[str, ...]) -> None:
    """ConfigError naming every invalid subject ID (shown with repr) and the allowed characters."""
    bad = [s for s in ids if not isinstance(s, str) or not SUBJECT_RE.fullmatch(s)]
    if bad:
        shown = ", ".join(repr(s) for s in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ConfigError(f"dataset '{name}': {where} has invalid subject ID(s) {shown}: {SUBJECT_CHARS}")


def bids_pattern(bids: dict) -> str:
    """Image path pattern of a BIDS raw dataset with entity filters (session, acquisition, run)."""
    root = bids["root"].rstrip("/")
    entities = ""
    folder = "sub-{subject}"
    if "session" in bids:
        folder += f"/ses-{bids['session']}"
        entities += f"_ses-{bids['session']}"
    if "acquisition" in bids:
        entities += f"_acq-{bids['acquisition']}"
    if "run" in bids:
        entities += f"_run-{bids['run']}"
    datatype = bids["datatype"]
    return f"{root}/{folder}/{datatype}/sub-{{subject}}{entities}_{{sequence}}.nii.gz"


def format_pattern(pattern: str, **values: str) -> str:
    """Fill `{name}` placeholders of a path pattern, leaving no placeholder unfilled."""
    out = pattern
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    if re.search(r"\{[A-Za-z_]+\}", out):
        raise ConfigError(f"pattern '{pattern}' has a placeholder not filled by {sorted(values)}")
    return out


def glob_subjects(pattern: str, sequence: str) -> tuple[list[str], list[str]]:
    """(valid, invalid) subject IDs whose file exists for `pattern` (with `{subject}`), sorted.

    `{subject}` may occur more than once (``sub-{subject}/anat/sub-{subject}_T1w.nii.gz``):
    every occurrence must then be the same ID. An ID that breaks `SUBJECT_RE` is returned as
    invalid (the caller names it), never dropped silently.
    """
    filled = pattern.replace("{sequence}", sequence)
    first, *rest = re.escape(filled).split(re.escape("{subject}"))
    regex = first + "".join(
        ("(?P<subject>[^/]+)" if i == 0 else "(?P=subject)") + part for i, part in enumerate(rest)
    )
    found = set()
    for path in glob.glob(filled.replace("{subject}", "*")):
        m = re.fullmatch(regex, path)
        if m:
            found.add(m.group("subject"))
    valid = sorted(s for s in found if SUBJECT_RE.fullmatch(s))
    return valid, sorted(found - set(valid))


PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")


def check_placeholders(name: str, key: str, pattern: str, allowed: tuple[str, ...]) -> None:
    """ConfigError naming the dataset and key when `pattern` has a placeholder other than `allowed`."""
    bad = sorted({p for p in PLACEHOLDER_RE.findall(pattern) if p not in allowed})
    if bad:
        shown = ", ".join("{" + p + "}" for p in bad)
        allowed_shown = ", ".join("{" + p + "}" for p in allowed)
        raise ConfigError(f"dataset '{name}': {key} '{pattern}' has placeholder(s) {shown}; "
                          f"only {allowed_shown} can be filled")


@dataclass(frozen=True)
class Dataset:
    """One dataset entry of the configuration, with its subjects resolved."""

    name: str
    pattern: str
    label_pattern: str | None
    sequences: tuple[str, ...]
    mask_method: str
    mask_sequence: str
    mask_pattern: str | None
    splits: dict[str, tuple[str, ...]]
    labelled_splits: tuple[str, ...]
    sequence_names: tuple[tuple[str, str], ...]
    anomaly: str | None = None  # condition name of the test_anomalous subjects

    @property
    def subjects(self) -> list[str]:
        out: list[str] = []
        for split in SPLITS:
            out.extend(self.splits.get(split, ()))
        return out

    @cached_property
    def _split_index(self) -> dict[str, str]:
        """subject -> split (split_of is asked once per job while the DAG is built)."""
        return {s: split for split, subjects in self.splits.items() for s in subjects}

    def split_of(self, subject: str) -> str:
        try:
            return self._split_index[subject]
        except KeyError:
            raise KeyError(f"subject '{subject}' is not in dataset '{self.name}'") from None

    def image(self, subject: str, sequence: str) -> str:
        return format_pattern(self.pattern, subject=subject, sequence=dict(self.sequence_names).get(sequence, sequence))

    def has_labels(self, split: str) -> bool:
        """Whether the subjects of `split` have a label file (a label pattern, a labelled split)."""
        return self.label_pattern is not None and split in self.labelled_splits

    def label(self, subject: str) -> str | None:
        """Label file of a subject in a labelled split (default: test_lesion), else None."""
        # the pattern first: no split lookup (a KeyError for an unknown subject) without one
        if self.label_pattern is None or not self.has_labels(self.split_of(subject)):
            return None
        return format_pattern(self.label_pattern, subject=subject)

    def raw_files(self, subject: str) -> list[str]:
        """Every raw file the subject declares: its images, then its label and mask file if any."""
        files = [self.image(subject, q) for q in self.sequences] + [self.label(subject), self.mask_file(subject)]
        return [f for f in files if f]

    def mask_file(self, subject: str) -> str | None:
        if self.mask_method != "pattern":
            return None
        seq = dict(self.sequence_names).get(self.mask_sequence, self.mask_sequence)
        return format_pattern(self.mask_pattern or "", subject=subject, sequence=seq)


def _read_split(name: str, split: str, value: Any, base_dir: Path) -> tuple[str, ...]:
    """A split's subject IDs: a list, or a text file with one ID per line ('#' starts a comment;
    a relative path is resolved against `base_dir`, the workflow's folder)."""
    if isinstance(value, list):
        check_subject_ids(name, f"split '{split}'", value)
        ids = list(value)
        where = f"split '{split}'"
    else:
        path = Path(value)
        if not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            problem = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise ConfigError(f"dataset '{name}': split '{split}' file '{value}' {problem} "
                              f"(looked for {path.resolve()}; relative split paths start at the workflow folder)")
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is not part of the first ID
        ids = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        ids = [i for i in ids if i]
        where = f"split '{split}' file '{value}'"
        check_subject_ids(name, where, ids)
    repeated = sorted(s for s, n in Counter(ids).items() if n > 1)  # linear: splits may hold 10,000s of IDs
    if repeated:
        raise ConfigError(f"dataset '{name}': {where} lists subject ID(s) {', '.join(map(repr, repeated))} twice")
    return tuple(ids)


def _resolve_splits(name: str, entry: dict, pattern: str, sequences: tuple[str, ...], *, base_dir: Path,
                    generated: bool) -> dict[str, tuple[str, ...]]:
    """Subjects per split: from ``splits`` (lists or files) or by globbing the pattern (``role``);
    a subject ID appears once."""
    if "splits" in entry and "role" in entry:
        raise ConfigError(f"dataset '{name}': give 'splits' or 'role', not both")
    if "splits" in entry:
        splits = {s: _read_split(name, s, v, base_dir) for s, v in entry["splits"].items()}
    elif "role" in entry:
        if generated:
            raise ConfigError(f"dataset '{name}': a generated dataset must list its subjects in 'splits'")
        first = entry["sequence_names"].get(sequences[0], sequences[0])
        found, invalid = glob_subjects(pattern, first)
        if invalid:
            shown = ", ".join(repr(s) for s in invalid[:5]) + (f" and {len(invalid) - 5} more" if len(invalid) > 5 else "")
            raise ConfigError(f"dataset '{name}': role '{entry['role']}': pattern "
                              f"'{pattern.replace('{sequence}', first)}' matches files whose subject ID is invalid "
                              f"({shown}): {SUBJECT_CHARS}; rename them or list the subjects in 'splits'")
        if not found:
            raise ConfigError(f"dataset '{name}': pattern '{pattern.replace('{sequence}', first)}' matches no file")
        splits = {entry["role"]: tuple(found)}
    else:
        raise ConfigError(f"dataset '{name}': give 'splits' (subject lists) or 'role' (glob the pattern)")

    seen: dict[str, str] = {}
    for split, subjects in splits.items():
        for s in subjects:
            if s in seen:  # within one split: _read_split has refused it, naming its file
                raise ConfigError(f"dataset '{name}': duplicate subject ID '{s}' in splits '{seen[s]}' and '{split}'")
            seen[s] = split
    if not seen:
        raise ConfigError(f"dataset '{name}': no subjects")
    return splits


def _check_sequences(name: str, entry: dict, pattern: str, sequences: tuple[str, ...]) -> None:
    """The image pattern and the sequences: placeholders, names, repeats."""
    repeated = sorted({q for q in sequences if sequences.count(q) > 1})
    if repeated:
        raise ConfigError(f"dataset '{name}': sequences lists {repeated} more than once")
    unknown = sorted(set(entry["sequence_names"]) - set(sequences))
    if unknown:
        raise ConfigError(f"dataset '{name}': sequence_names key(s) {unknown} are not among its sequences "
                          f"{list(sequences)}")
    check_placeholders(name, "pattern" if "pattern" in entry else "bids", pattern, ("subject", "sequence"))
    reserved = sorted({"label", "brainmask"} & set(sequences))
    if reserved:
        raise ConfigError(f"dataset '{name}': {reserved} cannot be sequence names (reserved for output files)")
    if "{subject}" not in pattern:
        raise ConfigError(f"dataset '{name}': pattern '{pattern}' must contain '{{subject}}'")
    if len(sequences) > 1 and "{sequence}" not in pattern:
        raise ConfigError(
            f"dataset '{name}': pattern '{pattern}' must contain '{{sequence}}' because it has {len(sequences)} sequences"
        )


def _check_label_and_mask(name: str, label_pattern: str | None, mask: dict, sequences: tuple[str, ...]) -> None:
    """The label pattern and the brain-mask entry."""
    if label_pattern is not None:
        if "{subject}" not in label_pattern:
            raise ConfigError(f"dataset '{name}': label_pattern '{label_pattern}' must contain '{{subject}}'")
        check_placeholders(name, "label_pattern", label_pattern, ("subject",))
    if mask.get("sequence", sequences[0]) not in sequences:
        raise ConfigError(
            f"dataset '{name}': brain_mask.sequence '{mask['sequence']}' is not one of its sequences {list(sequences)}"
        )
    if mask["method"] == "pattern" and "pattern" not in mask:
        raise ConfigError(f"dataset '{name}': brain_mask.method 'pattern' needs brain_mask.pattern")
    if mask["method"] != "pattern" and "pattern" in mask:
        raise ConfigError(f"dataset '{name}': brain_mask.pattern is only read with brain_mask.method 'pattern' "
                          f"(method is '{mask['method']}')")
    if "pattern" in mask:
        if "{subject}" not in mask["pattern"]:
            raise ConfigError(f"dataset '{name}': brain_mask.pattern '{mask['pattern']}' must contain '{{subject}}'")
        check_placeholders(name, "brain_mask.pattern", mask["pattern"], ("subject", "sequence"))


def resolve_dataset(name: str, entry: dict, *, base_dir: Path, generated: bool = False) -> Dataset:
    """Build a Dataset from its config entry, checking patterns and subject lists.

    `generated` datasets (the demo) are produced by the pipeline, so their files are not
    expected to exist yet and their subjects must be listed explicitly.
    """
    if ("pattern" in entry) == ("bids" in entry):
        raise ConfigError(f"dataset '{name}': give exactly one of 'pattern' or 'bids'")
    pattern = entry["pattern"] if "pattern" in entry else bids_pattern(entry["bids"])
    sequences = tuple(entry["sequences"])
    _check_sequences(name, entry, pattern, sequences)
    label_pattern = entry.get("label_pattern")  # absent: no labels
    mask = entry["brain_mask"]
    _check_label_and_mask(name, label_pattern, mask, sequences)

    splits = _resolve_splits(name, entry, pattern, sequences, base_dir=base_dir, generated=generated)
    for split in LESION_SPLITS:
        if splits.get(split) and label_pattern is None:
            raise ConfigError(f"dataset '{name}': subjects in split '{split}' need a 'label_pattern'")
        if splits.get(split) and split not in entry["labelled_splits"]:
            raise ConfigError(f"dataset '{name}': split '{split}' must be in labelled_splits "
                              f"(its subjects' labels are read), got {list(entry['labelled_splits'])}")
    return Dataset(
        name=name,
        pattern=pattern,
        label_pattern=label_pattern,
        sequences=sequences,
        mask_method=mask["method"],
        mask_sequence=mask.get("sequence", sequences[0]),  # absent: the first sequence
        mask_pattern=mask.get("pattern"),
        splits=splits,
        labelled_splits=tuple(entry["labelled_splits"]),
        sequence_names=tuple(entry["sequence_names"].items()),
        anomaly=entry.get("anomaly"),  # absent: no test_anomalous split
    )
