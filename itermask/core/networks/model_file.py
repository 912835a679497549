"""Model files: the state dicts of a method's networks and a meta dict, saved together."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from itermask.core.networks.build import build_network
from itermask.errors import ConfigError, InputError
from itermask.io.atomic import atomic_path


def save_models(path: str | Path, models: dict[str, nn.Module], meta: dict) -> None:
    """Save state dicts (on CPU) and `meta` atomically as {"meta": ..., "state_dicts": ...}.

    `meta` must hold "method", "network" and "in_channels" ({model key: channels}), and only
    plain Python values (dict, list, tuple, str, int, float, bool, None): `load_models` reads
    with ``weights_only=True``, which refuses e.g. NumPy scalars.
    """
    for key in ("method", "network", "in_channels"):
        if key not in meta:
            raise ValueError(f"model meta lacks '{key}'")
    states = {k: {n: t.detach().cpu().clone() for n, t in m.state_dict().items()} for k, m in models.items()}
    with atomic_path(path) as tmp:
        torch.save({"meta": meta, "state_dicts": states}, tmp)


def load_models(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, nn.Module], dict]:
    """Rebuild the networks saved by `save_models`; returns ({key: model in eval mode}, meta)."""
    path = Path(path)
    if not path.exists():
        raise InputError("model file does not exist", path=path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta, states = blob["meta"], blob["state_dicts"]
    except Exception as exc:
        raise InputError(f"cannot read model file ({type(exc).__name__}: {exc})", path=path) from exc
    models = {}
    for key, state in states.items():
        try:
            model = build_network(meta["method"], int(meta["in_channels"][key]), meta["network"])
            model.load_state_dict(state)
        except (KeyError, RuntimeError, ConfigError) as exc:
            raise InputError(f"model '{key}' does not match its stored settings ({exc})", path=path) from exc
        models[key] = model.to(device).eval()
    return models, meta
