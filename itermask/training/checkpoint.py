"""Training checkpoints: exact resume after a killed job (model, EMA, optimiser, scheduler,
scaler and every generator state), written atomically with the previous one kept."""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

CKPT_LATEST = "latest.pt"
CKPT_PREVIOUS = "previous.pt"


def rng_states() -> dict[str, Any]:
    """States of the global generators (torch CPU/CUDA, numpy legacy, python random)."""
    return {
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch_cpu"])
    if states["torch_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch_cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def save_checkpoint(checkpoint_dir: str | Path, state: dict) -> None:
    """Write `latest.pt` atomically, keeping the former latest as `previous.pt`."""
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    latest = folder / CKPT_LATEST
    tmp = folder / f".{CKPT_LATEST}.{os.getpid()}.tmp"
    try:
        torch.save(state, tmp)
        if latest.exists():
            os.replace(latest, folder / CKPT_PREVIOUS)
        os.replace(tmp, latest)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(checkpoint_dir: str | Path, config_hash: str, log: Callable[[str], None]) -> dict | None:
    """Newest readable checkpoint with `config_hash`, or None (mismatches are logged)."""
    for name in (CKPT_LATEST, CKPT_PREVIOUS):
        path = Path(checkpoint_dir) / name
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a truncated file from a crash: try the previous one
            log(f"checkpoint {path} unreadable ({type(exc).__name__}); trying the previous one")
            continue
        if state.get("config_hash") != config_hash:
            log(f"checkpoint {path} belongs to another configuration; starting fresh")
            return None
        return state
    return None


def config_hash(record: dict[str, Any]) -> str:
    """SHA-256 of everything that determines the training trajectory (``record``: method,
    variant, network, train settings without ``checkpoint_every``, seed, HF radius, items)."""
    blob = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
