"""Training checkpoints: exact resume after a killed job (model, EMA, optimiser, scheduler,
scaler and every generator state), written atomically with the previous one kept.

Checkpoints belong to their run and to its input data: the train rule passes ``R/checkpoints/<experiment>`` (inside
the results folder, under Snakemake's lock) and each configuration gets its own sub-folder
named by its config hash (which includes ``data_fingerprint`` of the items), so another
configuration, or the same one over regenerated data, never reads or overwrites them. Files
hold only tensors and plain Python values and are read with ``torch.load(weights_only=True)``
(no code runs on load); the generator states are stored as tensors/lists for that reason.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import struct
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from itermask.errors import InputError
from itermask.io.atomic import atomic_path

CKPT_LATEST = "latest.pt"
CKPT_PREVIOUS = "previous.pt"
CKPT_SET_ASIDE = "latest.pt.unreadable"  # an unreadable latest.pt, moved here when previous.pt resumes
HASH_CHARS = 16  # characters of the config hash in the folder name
# What torch.load (weights_only, torch 2.x) raises for an unreadable file, as tried on truncated,
# overwritten and random-byte files: a truncated zip gives OSError (EINVAL) or RuntimeError
# (PytorchStreamReader); random bytes or a legacy-format file fall to the pickle reader, which
# raises UnpicklingError (also for a file holding code), EOFError, UnicodeDecodeError (a
# ValueError), IndexError, KeyError, struct.error or AssertionError. OSError covers read errors.
UNREADABLE = (pickle.UnpicklingError, EOFError, RuntimeError, OSError, ValueError, IndexError, KeyError,
              struct.error, AssertionError)


def rng_states() -> dict[str, Any]:
    """States of the global generators (torch CPU/CUDA, numpy legacy, python random), as
    tensors and plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": list(internal), "gauss_next": gauss_next},
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch_cpu"])
    if states["torch_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch_cuda"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


def checkpoint_folder(root: str | Path, chash: str) -> Path:
    """The folder of one configuration's checkpoints: ``<root>/<first 16 hex of its hash>``."""
    return Path(root) / chash[:HASH_CHARS]


def save_checkpoint(checkpoint_dir: str | Path, state: dict) -> None:
    """Write `latest.pt` atomically, keeping the former latest as `previous.pt`."""
    latest = Path(checkpoint_dir) / CKPT_LATEST
    with atomic_path(latest) as tmp:
        torch.save(state, tmp)
        if latest.exists():
            latest.replace(latest.with_name(CKPT_PREVIOUS))


def load_checkpoint(checkpoint_dir: str | Path, config_hash: str, log: Callable[[str], None]) -> dict | None:
    """Newest readable checkpoint in `checkpoint_dir`, or None when there is none (a fresh start).

    Files are written atomically, so an unreadable one is corrupt (or from another torch): an
    unreadable latest falls back to the previous one and is moved aside to ``latest.pt.unreadable``
    (kept for inspection, replacing an older one), so the next save does not rotate it onto the
    good ``previous.pt``; when files exist and none is readable,
    InputError names them (never a silent restart, whose saves would overwrite them). A
    readable checkpoint of another configuration is refused (InputError naming both hashes):
    it is never loaded and never overwritten.
    """
    unreadable: dict[str, str] = {}  # path -> why
    for name in (CKPT_LATEST, CKPT_PREVIOUS):
        path = Path(checkpoint_dir) / name
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except UNREADABLE as exc:  # corrupt, holding code, or unreadable: try the previous one
            lines = str(exc).splitlines()
            unreadable[str(path)] = f"{type(exc).__name__}: {(lines[0] if lines else 'no message')[:200]}"
            then = "; trying the previous one" if name == CKPT_LATEST else ""
            log(f"checkpoint {path} unreadable ({unreadable[str(path)]}){then}")
            continue
        found = state.get("config_hash") if isinstance(state, dict) else None
        if found != config_hash:
            raise InputError(
                f"checkpoint belongs to configuration {str(found)[:HASH_CHARS]}, this run is {config_hash[:HASH_CHARS]}; "
                "refusing to resume from it or overwrite it (move or delete it to start fresh)", path=path)
        if unreadable:  # resuming from previous.pt: set the unreadable latest.pt aside
            aside = Path(checkpoint_dir) / CKPT_SET_ASIDE
            (Path(checkpoint_dir) / CKPT_LATEST).replace(aside)
            log(f"resuming from {path}; the unreadable latest checkpoint is kept as {aside}")
        return state
    if unreadable:
        why = "; ".join(f"{path} ({reason})" for path, reason in unreadable.items())
        raise InputError(f"no readable checkpoint to resume from: {why}; delete {' and '.join(unreadable)} "
                         "to start training afresh", path=checkpoint_dir)
    return None


def config_hash(record: dict[str, Any]) -> str:
    """SHA-256 of everything that determines the training trajectory (``record``: method,
    variant, network, train settings without ``checkpoint_every``, seed, HF radius, items and
    their ``data_fingerprint``)."""
    blob = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def item_files(item: Mapping[str, Any]) -> list[str]:
    """The paths one training item names, in order: every value but ``subject`` (``sequences``
    is a dict of paths); empty values (no ``hf``) are skipped."""
    out: list[str] = []
    for key, value in item.items():
        if key != "subject" and value:
            out += [str(v) for v in value.values()] if isinstance(value, Mapping) else [str(value)]
    return out


def file_stats(path: str) -> list[list[Any]]:
    """``[path, size, mtime in ns]`` of a file, of each file under a folder (sorted), or
    ``[path, None, None]`` when nothing is there."""
    if os.path.isdir(path):
        return [row for f in sorted(Path(path).rglob("*")) if f.is_file() for row in file_stats(str(f))]
    if not os.path.exists(path):
        return [[path, None, None]]
    st = os.stat(path)
    return [[path, st.st_size, st.st_mtime_ns]]


def data_fingerprint(items: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Cheap fingerprint of the items' data: size and modification time (ns) of every file they
    name (items in the given order), for the config hash.

    Resume is for a killed job over unchanged inputs. Item paths stay the same when the
    preprocessing is rerun with other data (another spacing, a replaced scan); Snakemake then
    reruns training, which must start fresh rather than "resume" a finished checkpoint of the
    old data. Stat, not content hashing: cheap, and a rewritten file gets a new mtime (a file
    merely rewritten with the same bytes also starts fresh, which is safe).
    """
    return [row for item in items for path in item_files(item) for row in file_stats(path)]


def load_scaler(scaler: torch.amp.GradScaler, saved: Mapping[str, Any]) -> bool:
    """Load a GradScaler's saved state; False when skipped (the scaler starts fresh).

    The precision is picked per device (``pick_precision``: a scaler only for fp16 on CUDA), so a
    job resumed on another device type may meet an empty state (saved by a disabled scaler: on
    CPU or with bf16), which an enabled scaler refuses to load, or a state for a disabled scaler,
    which has no use for it. Both are skipped; the weights and optimiser still resume.
    """
    if not saved or not scaler.is_enabled():
        return False
    scaler.load_state_dict(dict(saved))
    return True
