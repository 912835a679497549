"""A trained model file, loaded through its method (which builds the networks from the meta)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from itermask import methods
from itermask.core.networks.layout import in_layout, memory_format
from itermask.core.networks.model_file import read_model_file
from itermask.errors import ConfigError, InputError


def load_trained(path: str | Path, device: torch.device | str, *,
                 channels_last: bool) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """({network name: module in eval mode on ``device``}, meta) of a model file; ``channels_last``
    (config ``resources.channels_last``): 3D weights in the channels-last layout
    (``core.networks.layout``), which oneDNN also uses for the activations."""
    meta, states = read_model_file(path)
    try:
        method = methods.get(meta["method"])
        networks = method.networks_from_meta(meta)
    except (ConfigError, InputError, KeyError, TypeError, ValueError) as exc:  # e.g. a network setting missing
        raise InputError(f"model file's meta does not describe its networks ({type(exc).__name__}: {exc})",
                         path=path) from exc
    for key, state in states.items():
        try:
            networks[key].load_state_dict(state)
        except (KeyError, RuntimeError) as exc:
            raise InputError(f"network '{key}' does not match its stored settings ({exc})", path=path) from exc
    layout = memory_format(channels_last)
    return {k: in_layout(networks[k].to(device), layout).eval() for k in states}, meta
