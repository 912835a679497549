"""A trained model file, loaded through its method (which builds the networks from the meta)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from itermask import methods
from itermask.errors import ConfigError, InputError


def load_trained(path: str | Path, device: torch.device | str) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """({network name: module in eval mode on ``device``}, meta) of a model file."""
    path = Path(path)
    if not path.exists():
        raise InputError("model file does not exist", path=path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta, states = blob["meta"], blob["state_dicts"]
        method = methods.get(meta["method"])
    except (ConfigError, Exception) as exc:
        raise InputError(f"cannot read model file ({type(exc).__name__}: {exc})", path=path) from exc
    networks = method.networks_from_meta(meta)
    for key, state in states.items():
        try:
            networks[key].load_state_dict(state)
        except (KeyError, RuntimeError) as exc:
            raise InputError(f"network '{key}' does not match its stored settings ({exc})", path=path) from exc
    return {k: networks[k].to(device).eval() for k in states}, meta
