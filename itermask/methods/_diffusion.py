"""Diffusion parts shared by the DDPM and AutoDDPM baselines (METHOD.md §10): the noise
schedule, the forward process, the reverse (ancestral DDPM) step, partial denoising, the
stitch and the RePaint inpainting loop. Pure functions over tensors; torch and MONAI are
imported inside them (the workflow imports the method modules while it builds the DAG).

Schedule. The reference is the 1000-step linear schedule of Ho et al. (beta 1e-4 -> 0.02,
MONAI's ``linear_beta``). A model may be trained on ``timesteps`` = 1000 / stride of it (the
demo): model step j stands for reference step (j + 1) * stride - 1 and keeps that step's
cumulative product alpha_bar exactly (betas respaced as 1 - alpha_bar_j / alpha_bar_{j-1},
Nichol & Dhariwal 2021), so q(x_j | x_0) is the reference forward process at that step and
ancestral sampling over the model's steps is a strided sampler of the same process. With
stride 1 the schedule is MONAI's own. Test-time noise levels are given in reference steps
(``noise_t: 200`` means t = 200 of 1000 whatever the model's ``timesteps``).

Random draws come from a `SliceNoise`: one torch generator per slice, seeded by the
inference stage (``ctx.seed(condition, ...)``), so a slice's result does not depend on the
batch it is in.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

REFERENCE_TIMESTEPS = 1000  # Ho et al.'s linear schedule, as Pinaya et al. and Bercea et al. train it
BETA_START, BETA_END = 1.0e-4, 2.0e-2


def stride_of(timesteps: int) -> int:
    """Reference steps per model step (``timesteps`` must divide 1000)."""
    if timesteps < 1 or REFERENCE_TIMESTEPS % int(timesteps):
        raise ValueError(f"network.timesteps must divide {REFERENCE_TIMESTEPS}, got {timesteps}")
    return REFERENCE_TIMESTEPS // int(timesteps)


def make_scheduler(timesteps: int) -> Any:
    """MONAI's DDPMScheduler (epsilon prediction, fixed small variance, no clipping: the
    scaled slices lie outside [-1, 1]) on ``timesteps`` respaced steps of the reference."""
    import torch
    from monai.networks.schedulers import DDPMScheduler

    stride = stride_of(timesteps)
    ref = DDPMScheduler(num_train_timesteps=REFERENCE_TIMESTEPS, schedule="linear_beta", beta_start=BETA_START,
                        beta_end=BETA_END, clip_sample=False, prediction_type="epsilon")
    if stride == 1:
        return ref
    sched = DDPMScheduler(num_train_timesteps=int(timesteps), schedule="linear_beta", clip_sample=False,
                          prediction_type="epsilon")
    abar = ref.alphas_cumprod.double()[stride - 1::stride]
    betas = 1.0 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    sched.betas, sched.alphas, sched.alphas_cumprod = betas.float(), (1.0 - betas).float(), abar.float()
    return sched


def model_step(reference_t: int, timesteps: int) -> int:
    """The model step nearest to reference step ``reference_t``."""
    stride = stride_of(timesteps)
    return int(min(max(round((int(reference_t) + 1) / stride) - 1, 0), int(timesteps) - 1))


def reference_step(j: int, timesteps: int) -> int:
    return (int(j) + 1) * stride_of(timesteps) - 1


class SliceNoise:
    """Standard normal draws, one generator per slice (seeds from the inference stage)."""

    def __init__(self, seeds: Sequence[int], device: Any) -> None:
        import torch

        self.device = torch.device(device)
        self.generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]

    def draw(self, shape: tuple[int, ...]) -> Any:
        """(len(seeds), *shape) float32 on the device."""
        import torch

        return torch.stack([torch.randn(shape, generator=g, device=self.device) for g in self.generators])


def _at(values: Any, j: int, like: Any) -> Any:
    return values[j].to(device=like.device, dtype=like.dtype)


def add_noise(sched: Any, x0: Any, j: int, noise: Any) -> Any:
    """x_j ~ q(x_j | x_0) = N(sqrt(abar_j) x_0, (1 - abar_j) I) for the draw ``noise``."""
    a = _at(sched.alphas_cumprod, j, x0)
    return a.sqrt() * x0 + (1.0 - a).sqrt() * noise


def reverse_step(sched: Any, eps: Any, j: int, x: Any, z: Any) -> Any:
    """x_{j-1} from x_j: the DDPM posterior mean given the predicted x_0 (from ``eps``) plus
    its fixed-small variance times the draw ``z`` (none at j = 0); MONAI's ``step`` without
    clipping, with the draw passed in."""
    a = _at(sched.alphas_cumprod, j, x)
    a_prev = _at(sched.alphas_cumprod, j - 1, x) if j > 0 else a.new_tensor(1.0)
    beta, alpha = _at(sched.betas, j, x), _at(sched.alphas, j, x)
    x0 = (x - (1.0 - a).sqrt() * eps) / a.sqrt()
    mean = (a_prev.sqrt() * beta / (1.0 - a)) * x0 + (alpha.sqrt() * (1.0 - a_prev) / (1.0 - a)) * x
    if j == 0:
        return mean
    var = ((1.0 - a_prev) / (1.0 - a) * beta).clamp_min(1e-20)
    return mean + var.sqrt() * z


def _eps(net: Any, x: Any, j: int) -> Any:
    import torch

    return net(x, torch.full((x.shape[0],), int(j), device=x.device, dtype=torch.long)).float()


def denoise_from(net: Any, sched: Any, x0: Any, j: int, noise: SliceNoise) -> Any:
    """Noise ``x0`` (B, 1, H, W) to model step ``j`` and run the reverse chain to step 0."""
    x = add_noise(sched, x0, j, noise.draw(tuple(x0.shape[1:])))
    for k in range(int(j), -1, -1):
        x = reverse_step(sched, _eps(net, x, k), k, x, noise.draw(tuple(x0.shape[1:])))
    return x


def stitch(x: Any, x_hat: Any, mask: Any) -> Any:
    """(1 - m) x + m x_hat for a binary mask: x exactly outside it."""
    import torch

    return torch.where(mask.bool(), x_hat, x)


def dilate(mask: Any) -> Any:
    """Binary dilation by a 3x3 square (B, 1, H, W)."""
    import torch.nn.functional as F

    return F.max_pool2d(mask.float(), 3, stride=1, padding=1) > 0.5


def repaint(net: Any, sched: Any, x: Any, start: Any, mask: Any, j: int, resamplings: int, noise: SliceNoise,
            observe: Callable[[int, int, Any, Any], Any] | None = None) -> Any:
    """RePaint (Lugmayr et al. 2022) as AutoDDPM runs it: noise ``start`` to step ``j``; at each
    step k (j .. 1) and each of ``resamplings`` rounds (one at k = 0), the known region (outside ``mask``) is
    x noised to k - 1 (x itself at k = 0), the unknown region one reverse step of the current
    image; between rounds the image is re-noised to k (q(x_k | x_{k-1})). ``observe(k, u,
    image, known)`` sees every combined image (testing)."""
    import torch

    shape, m = tuple(x.shape[1:]), mask.bool()
    cur = add_noise(sched, start, j, noise.draw(shape))
    for k in range(int(j), -1, -1):
        # The last step (k = 0) runs once: with no re-noising, a further round would apply the
        # final reverse step again to an already denoised image (RePaint's Algorithm 1 recomputes
        # x_0 from the same x_1 there, which changes nothing).
        for u in range(int(resamplings) if k > 0 else 1):
            known = add_noise(sched, x, k - 1, noise.draw(shape)) if k > 0 else x
            unknown = reverse_step(sched, _eps(net, cur, k), k, cur, noise.draw(shape))
            cur = torch.where(m, unknown, known)
            if observe is not None:
                observe(k, u, cur, known)
            if k > 0 and u < int(resamplings) - 1:
                beta = _at(sched.betas, k, cur)
                cur = (1.0 - beta).sqrt() * cur + beta.sqrt() * noise.draw(shape)
    return cur
