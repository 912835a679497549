"""Shared by the DDPM and AutoDDPM tests: tiny network settings and a stand-in context."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from baselines_e2e import settings_of

NET = {"diffusion_channels": [8, 16], "attention_levels": [False, True], "num_head_channels": 8,
       "norm_num_groups": 4, "timesteps": 20}


def tiny_settings(method: str, **infer):
    s = settings_of(method, 2, network=NET)
    return _with_infer(s, infer) if infer else s


def _with_infer(s, infer):
    import dataclasses

    from itermask.config.settings import freeze, thaw

    return dataclasses.replace(s, infer=freeze({**thaw(s.infer), **infer}))


def context(settings, timesteps: int = 20, scale: float = 3.0):
    """What `anomaly` reads of the inference context."""
    return SimpleNamespace(settings=settings, device=torch.device("cpu"),
                           meta={"network": {"timesteps": timesteps, "data_scale": scale}})


def zero_eps(x, t):
    """A stand-in network predicting no noise."""
    return torch.zeros_like(x)
