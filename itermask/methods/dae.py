"""DAE baseline (Kascenas et al., MIDL 2022; METHOD.md §10): the backbone UNet (with skips)
trained to remove coarse noise. Noise of one training sample: N(0, sigma) drawn on a coarse
grid of ceil(n / ``noise_cell``) points per axis (``noise_cell`` 8: 16x16 for 128^2 slices,
as in the official code, and the same ratio in 3D: 24^3 for 192^3), optionally restricted in
sign, interpolated (bilinear / trilinear) onto the image with the grid's corner points on the
image's corners (``align_corners``, as ``F.upsample_bilinear`` in the official code), rolled by a
random shift per axis (circularly, as ``torch.roll`` in the official code), and multiplied by
the brain mask. Input x + noise, target x, loss = MSE over the brain. Test: x_hat = DAE(x), no
noise; anomaly map (x - x_hat)^2 in the brain; score its mean.

Sign (``noise_sign``): ``both`` (the official code: zero-mean noise), ``positive`` ([0, +inf))
or ``negative`` ((-inf, 0]), the three 2D rows of IterMask2 Table 1. ``noise_sign_rule``
says how a restricted sign is made: ``abs`` (default) folds the draw, n -> |n| (or -|n|);
``clip`` keeps max(n, 0) (or min(n, 0)). The default is ``abs`` because it changes only the
sign: every coarse cell still carries noise with the magnitude distribution of the
symmetric variant (E n^2 = sigma^2), so the three rows compare signs alone; ``clip`` leaves
half of the cells without noise and halves the noise energy (E n^2 = sigma^2 / 2), which
mixes a change of sign with a weaker corruption. The papers do not say which they used.

Where the noise is drawn: in ``corrupt`` (CPU, the loop's background thread), one NumPy
generator per (seed, sample, epoch) (``itermask.io.seeds.keyed_seed``), like IterMask's
masks. The noise of a sample is then the same on CPU and CUDA and for any batch size or
step order, a resumed run redraws exactly the same noise, and the loop's rot90 augmentation
turns noise and brain with the image. Drawing on the device would save the host-to-device
copy of one float tensor per step, which is small beside the 3D UNet's step.

Settings (schema ``method_defaults.dae``): network ``spatial_dims``, the backbone's keys,
``noise_sigma`` (1.2: the paper's 0.2 rescaled to z-scored data; "tuned": 3), ``noise_cell``,
``noise_sign``, ``noise_sign_rule``; infer ``batch_size``, ``score`` (``mean_error``). The
noise settings sit in ``network`` because they define what the network learns: they are
stored in the model file and in the checkpoints' config hash.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from itermask.methods._baseline import ReconstructionBaseline

NOISE_KEYS = ("noise_sigma", "noise_cell", "noise_sign", "noise_sign_rule")


def restrict_sign(n: np.ndarray, sign: str, rule: str) -> np.ndarray:
    """``n`` restricted to ``sign`` (both | positive | negative) by ``rule`` (abs | clip)."""
    if sign == "both":
        return n
    folded = np.abs(n) if rule == "abs" else np.maximum(n, 0.0)
    return folded if sign == "positive" else -folded


def upsample(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(Bi/tri)linear interpolation of the coarse grid onto ``shape``, its corner points on the
    image's corner voxels (``align_corners``: ``F.upsample_bilinear`` in the official code)."""
    import torch
    import torch.nn.functional as F

    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[coarse.ndim]
    t = torch.from_numpy(np.ascontiguousarray(coarse, np.float32))[None, None]
    size = tuple(int(n) for n in shape)
    return F.interpolate(t, size=size, mode=mode, align_corners=True)[0, 0].numpy()


def coarse_noise(rng: np.random.Generator, shape: tuple[int, ...], *, sigma: float, cell: int, sign: str,
                 rule: str) -> np.ndarray:
    """The DAE noise of one sample of ``shape`` (module docstring), before the brain mask."""
    coarse = rng.normal(0.0, sigma, tuple(-(-int(n) // cell) for n in shape))
    fine = upsample(restrict_sign(coarse, sign, rule), shape)
    shifts = tuple(int(rng.integers(0, n)) for n in shape)
    return np.roll(fine, shifts, axis=tuple(range(len(shape)))).astype(np.float32)


def noise_batch(settings: Any, brains: np.ndarray, sample_ids: np.ndarray, *keys: object) -> dict[str, Any]:
    """``noise`` (B, 1, *spatial) float32, zero outside the brain, and ``brain`` (B, 1, *spatial)
    bool; each sample's noise from its own generator keyed by (seed, 'dae', *keys, sample id)."""
    import torch

    from itermask.io.seeds import keyed_seed

    net = settings.network
    noise = []
    for brain, i in zip(brains, sample_ids):
        rng = np.random.default_rng(keyed_seed(settings.seed, "dae", *keys, int(i)))
        n = coarse_noise(rng, brain.shape, sigma=float(net["noise_sigma"]), cell=int(net["noise_cell"]),
                         sign=net["noise_sign"], rule=net["noise_sign_rule"])
        noise.append(np.where(brain, n, 0.0).astype(np.float32))
    return {"noise": torch.from_numpy(np.stack(noise)[:, None]),
            "brain": torch.from_numpy(np.ascontiguousarray(brains, dtype=bool)[:, None])}


class DAE(ReconstructionBaseline):
    name = "dae"
    skip_connections = True
    network_extra = NOISE_KEYS

    def describe(self, settings: Any) -> str:
        n = settings.network
        sign = {"both": "(-inf, +inf)", "positive": "[0, +inf)", "negative": "(-inf, 0]"}[n["noise_sign"]]
        rule = f" ({n['noise_sign_rule']})" if n["noise_sign"] != "both" else ""
        return f"coarse noise σ {float(n['noise_sigma']):g}, cell {int(n['noise_cell'])}, sign {sign}{rule}"

    def corrupt(self, settings: Any, brains: np.ndarray, sample_ids: np.ndarray, epoch: int) -> dict[str, Any]:
        return noise_batch(settings, brains, sample_ids, "train", int(epoch))

    def validation_corrupt(self, settings: Any, brains: np.ndarray, sample_ids: np.ndarray) -> dict[str, Any]:
        return noise_batch(settings, brains, sample_ids, "val")

    def losses(self, settings: Any, networks: Mapping[str, Any], batch: Mapping[str, Any], generator: Any) -> dict:
        x, brain = batch["image"], batch["brain"].to(batch["image"].dtype)
        recon = networks["net"](x + batch["noise"]).float()
        return {"net": (((recon - x) ** 2) * brain).sum() / brain.sum().clamp_min(1.0)}


METHOD = DAE()
