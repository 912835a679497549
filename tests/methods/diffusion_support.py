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
    return SimpleNamespace(settings=settings, device=torch.device("cpu"), amp=False,
                           meta={"network": {"timesteps": timesteps, "data_scale": scale}})


def zero_eps(x, t):
    """A stand-in network predicting no noise."""
    return torch.zeros_like(x)


def predicting_x0(sched, x0_of):
    """A stand-in network whose noise prediction makes its x_0 estimate ``x0_of(x_t, t)``
    (eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t), t the model step of the batch)."""
    def net(x, t):
        a = sched.alphas_cumprod[int(t[0])]
        return (x - a.sqrt() * x0_of(x, int(t[0]))) / (1 - a).sqrt()

    return net


def fill_with_one(sched, bright: float = 1.5):
    """A stand-in network for known-answer inpainting (model-scaled units): at step 0 its x_0
    estimate is the input with values above ``bright`` removed (0) and the rest rounded to
    integers; at steps >= 1 it is 1 everywhere. Denoising from noise_t = 0 (a step-0 call
    only) removes a bright blob and rounds away the small noise of step 0 (std sqrt(beta_0)
    = 0.01 in the reference schedule): x_hat is 0 exactly for images in [0, 0.5) plus blobs
    above ``bright``. The RePaint chain from inpaint_t > 0 moves the unknown region towards 1
    (steps >= 1), and the final step (0) rounds it to 1: the inpainted image is 1 inside the
    mask up to float rounding (1 - abar_0 is beta_0 to 2e-4 relative in float32)."""
    def x0_of(x, t):
        if t == 0:
            return torch.where(x > bright, torch.zeros_like(x), torch.round(x))
        return torch.ones_like(x)

    return predicting_x0(sched, x0_of)


class RecordingNoise:
    """A `SliceNoise` that keeps every draw, in order (tests replay the draws)."""

    def __init__(self, seeds, device="cpu") -> None:
        from itermask.methods._diffusion import SliceNoise

        self.noise, self.draws = SliceNoise(seeds, device), []

    def draw(self, shape):
        d = self.noise.draw(shape)
        self.draws.append(d.clone())
        return d
