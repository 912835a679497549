"""Model files: the state dicts of a method's networks and a meta dict, saved together."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from itermask.errors import InputError
from itermask.io.atomic import atomic_path


def save_models(path: str | Path, models: dict[str, nn.Module], meta: dict) -> None:
    """Save state dicts (on CPU) and `meta` atomically as {"meta": ..., "state_dicts": ...}.

    `meta` must hold "method", "network" and "in_channels" ({model key: channels}), and only
    plain Python values (dict, list, tuple, str, int, float, bool, None): `read_model_file` reads
    with ``weights_only=True``, which refuses e.g. NumPy scalars.
    """
    for key in ("method", "network", "in_channels"):
        if key not in meta:
            raise ValueError(f"model meta lacks '{key}'")
    states = {k: {n: t.detach().cpu().clone() for n, t in m.state_dict().items()} for k, m in models.items()}
    with atomic_path(path) as tmp:
        torch.save({"meta": meta, "state_dicts": states}, tmp)


def read_model_file(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """(meta, state dicts by network name) of a file written by `save_models`, read with
    ``weights_only=True``; the networks are built by the model's method
    (``itermask.inference.model.load_trained``)."""
    path = Path(path)
    if not path.exists():
        raise InputError("model file does not exist", path=path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return blob["meta"], blob["state_dicts"]
    except Exception as exc:
        raise InputError(f"cannot read model file ({type(exc).__name__}: {exc})", path=path) from exc
