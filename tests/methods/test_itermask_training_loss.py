"""IterMask3D's training objective (METHOD.md §4): the network input is
concat((1 - M) x + M eps, HF(x)) with eps ~ N(0, 1) drawn fresh each step, the target is x and
the loss is the MSE over the whole image (not only inside M or the brain).

A stand-in network records its input and returns a fixed tensor, so the input channels and the
loss value are known answers."""
from __future__ import annotations

import pytest
import torch

from support import experiment_settings

from itermask import methods

SHAPE = (2, 1, 24, 24, 24)


class Recorder(torch.nn.Module):
    """Stand-in network: records each input, returns a fixed output."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output
        self.inputs: list[torch.Tensor] = []

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        self.inputs.append(t.detach().clone())
        return self.output


def _batch() -> dict[str, torch.Tensor]:
    """x: a 'brain' of intensity ~5 (SD 0.1) in a background of -3; HF: a distinct tensor;
    M: half the volume (a slab of each sample), inside the brain and out of it."""
    g = torch.Generator().manual_seed(123)
    x = torch.full(SHAPE, -3.0)
    x[:, :, 3:21, 3:21, 3:21] = 5.0 + 0.1 * torch.randn((2, 1, 18, 18, 18), generator=g)
    hf = torch.randn(SHAPE, generator=g) * 0.5 + 10.0
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[0, :, :12] = True
    mask[1, :, :, 12:] = True
    return {"image": x, "hf": hf, "mask": mask}


@pytest.fixture(scope="module")
def method_and_settings():
    return methods.get("itermask3d"), experiment_settings("itermask3d")


def test_input_is_masked_image_with_fresh_gaussian_noise_plus_hf(method_and_settings):
    method, s = method_and_settings
    batch = _batch()
    x, hf, mask = batch["image"], batch["hf"], batch["mask"]
    net = Recorder(torch.zeros(SHAPE))
    gen = torch.Generator().manual_seed(0)
    method.losses(s, {"masked": net}, batch, gen)
    (inp,) = net.inputs
    assert inp.shape == (2, 2, 24, 24, 24)
    first, second = inp[:, :1], inp[:, 1:]
    # channel 1 outside M: the image itself; channel 2: the HF image, unchanged
    assert torch.equal(first[~mask], x[~mask])
    assert torch.equal(second, hf)
    # channel 1 inside M (13,824 voxels): N(0, 1) noise, not the image (~5 / -3 there)
    eps = first[mask]
    assert eps.numel() == 13824
    assert float(eps.mean()) == pytest.approx(0.0, abs=0.04)  # SE 0.0085
    assert float(eps.std()) == pytest.approx(1.0, abs=0.05)
    assert float((eps.abs() > 2).float().mean()) == pytest.approx(0.0455, abs=0.006)  # Gaussian tails, SE 0.0018
    assert float(torch.corrcoef(torch.stack([eps, x[mask]]))[0, 1]) == pytest.approx(0.0, abs=0.05)
    # a new draw per voxel and per sample (not one value, not one field shared by the samples)
    assert eps.unique().numel() == eps.numel()
    assert not torch.equal(first[0, :, :12, 12:], first[1, :, :12, 12:])  # masked in both samples


def test_loss_is_the_mse_over_the_whole_image(method_and_settings):
    """out - x is 2 inside M, 0.5 outside M in the brain and 1 in the background: whole-image
    MSE 0.5*4 + ... differs from the MSE inside M (4), in the brain, or outside M."""
    method, s = method_and_settings
    batch = _batch()
    x, mask = batch["image"], batch["mask"]
    brain = x > -3.0
    out = x + torch.where(mask, 2.0, torch.where(brain, 0.5, 1.0))
    net = Recorder(out)
    loss = method.losses(s, {"masked": net}, batch, torch.Generator().manual_seed(0))["masked"]
    expected = float(((out - x) ** 2).mean())
    assert loss.dim() == 0
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    for part in (mask, brain, ~mask):  # the losses of the wrong readings are far from it
        assert abs(float(((out - x)[part] ** 2).mean()) - expected) > 0.1
    # target x, not the masked input: a network returning x exactly has zero loss
    assert float(method.losses(s, {"masked": Recorder(x.clone())}, batch, torch.Generator().manual_seed(0))
                 ["masked"]) == 0.0


def test_each_step_draws_new_noise_reproducibly(method_and_settings):
    """Two consecutive steps (the same generator) fill M with different noise; a generator
    seeded the same way again gives the same noise (the loop seeds it per step)."""
    method, s = method_and_settings
    batch = _batch()
    mask = batch["mask"]
    net = Recorder(torch.zeros(SHAPE))
    gen = torch.Generator().manual_seed(7)
    method.losses(s, {"masked": net}, batch, gen)
    method.losses(s, {"masked": net}, batch, gen)
    method.losses(s, {"masked": net}, batch, torch.Generator().manual_seed(7))
    a, b, c = (t[:, :1][mask] for t in net.inputs)
    assert not torch.equal(a, b)
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) == pytest.approx(0.0, abs=0.05)
    assert torch.equal(a, c)
