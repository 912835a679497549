"""Rule training_items: an experiment's training and validation items (per subject the files its
method's InputSpec asks for, rules/inputs/train.smk) in one JSON file, which rule train reads.

The file is the training job's one input, so the DAG links training to the preprocessed files
through this small job: Snakemake compares a file a job asks for with its producer's whole input
list, and every inference job asks for the model (with the files themselves as the training
job's inputs, a scan of about three files per training subject per inference job).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from itermask.errors import InputError
from itermask.io.atomic import write_json

SPLITS = ("train", "val")


def write_items(path: str | Path, train: Sequence[dict], val: Sequence[dict]) -> None:
    """Write ``{"train": [...], "val": [...]}`` atomically."""
    write_json(path, {"train": list(train), "val": list(val)})


def read_items(path: str | Path) -> tuple[list[dict], list[dict]]:
    """(train items, val items) of a file `write_items` wrote; InputError naming the file otherwise."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the training items: {exc}", path=path) from None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), list) for k in SPLITS):
        raise InputError("training items file: expected an object with lists 'train' and 'val'", path=path)
    if not record["train"]:
        raise InputError("training items file lists no training subject", path=path)
    return record["train"], record["val"]
