"""High-frequency image (METHOD.md §3) against an independent formula and known cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from itermask.core.highfreq import high_frequency, high_frequency_torch

torch.set_num_threads(1)


def reference_hf(x: np.ndarray, r: float) -> np.ndarray:
    """Straightforward version: explicit meshgrid, abs/angle split and polar recombination."""
    spec = np.fft.fftshift(np.fft.fftn(x.astype(np.float64)))
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in x.shape], indexing="ij")
    dist = np.sqrt(sum(g.astype(np.float64) ** 2 for g in grids))
    amplitude = np.where(dist >= r, np.abs(spec), 1.0)
    phase = np.angle(spec)
    rebuilt = amplitude * np.cos(phase) + 1j * amplitude * np.sin(phase)
    return np.real(np.fft.ifftn(np.fft.ifftshift(rebuilt)))


@pytest.mark.parametrize("shape, r", [((32, 32), 5), ((31, 24), 7), ((16, 18, 15), 4), ((20, 20, 20), 15)])
def test_matches_independent_formula(shape, r):
    x = np.random.default_rng(1).normal(size=shape) * 10 + 3
    out = high_frequency(x, radius=r)
    assert out.dtype == np.float32 and out.shape == shape
    np.testing.assert_allclose(out, reference_hf(x, r), rtol=1e-5, atol=1e-5)


def test_constant_image_gives_a_delta():
    # A constant c has one non-zero coefficient (DC, positive phase) -> amplitude 1 inside
    # the radius everywhere (all other coefficients are 0 with phase 0) -> spectrum of ones
    # inside the disc, 0 outside -> HF = (#frequencies inside the disc)/N at the origin.
    n, r = 16, 3
    out = high_frequency(np.full((n, n), 7.0), radius=r)
    ii, jj = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    k = np.sqrt(ii**2 + jj**2) < r
    expected = np.real(np.fft.ifft2(np.fft.ifftshift(k.astype(complex))))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert out[0, 0] == pytest.approx(k.sum() / n**2)


def test_radius_zero_is_identity():
    x = np.random.default_rng(2).normal(size=(12, 14, 10))
    np.testing.assert_allclose(high_frequency(x, radius=0), x, atol=1e-5)


@pytest.mark.parametrize("shape", [(24, 20), (15, 17, 16)])
def test_spectrum_of_result(shape):
    # Outside the disc the spectrum is unchanged; inside it has amplitude 1 (the disc is
    # symmetric under k -> -k, so taking the real part changes nothing).
    r = 4
    x = np.random.default_rng(5).normal(size=shape) * 3
    spec_in = np.fft.fftshift(np.fft.fftn(x))
    spec_out = np.fft.fftshift(np.fft.fftn(high_frequency(x, radius=r).astype(np.float64)))
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    inside = sum(g**2 for g in grids) < r**2
    np.testing.assert_allclose(np.abs(spec_out[inside]), 1.0, atol=1e-3)
    unit_in = spec_in[inside] / np.abs(spec_in[inside])
    np.testing.assert_allclose(spec_out[inside], unit_in, atol=1e-3)
    np.testing.assert_allclose(spec_out[~inside], spec_in[~inside], atol=1e-3)


def test_low_frequency_content_is_removed():
    # a low-frequency blob has its spectrum concentrated at the centre: HF is much flatter
    n = 64
    g = np.exp(-((np.arange(n) - n / 2) ** 2) / (2 * 10.0**2))
    blob = 100 * np.outer(g, g)
    assert np.std(high_frequency(blob, radius=15)) < 1e-2 * np.std(blob)


@pytest.mark.parametrize("shape, ndim", [((3, 1, 32, 30), None), ((2, 1, 16, 18, 14), None), ((4, 20, 22), 2)])
def test_torch_matches_numpy_batched(shape, ndim):
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32) * 5
    out = high_frequency_torch(torch.from_numpy(x), radius=6, ndim=ndim)
    assert out.dtype == torch.float32 and tuple(out.shape) == shape
    k = ndim or (3 if len(shape) >= 5 else 2)
    flat = x.reshape((-1,) + shape[-k:])
    expected = np.stack([high_frequency(v, radius=6) for v in flat]).reshape(shape)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5 * scale)
    # batch consistency: each item alone gives the same as within the batch
    one = high_frequency_torch(torch.from_numpy(x[1:2]), radius=6, ndim=ndim)
    np.testing.assert_allclose(one.numpy(), out.numpy()[1:2], atol=1e-5 * scale)


def test_torch_rejects_too_few_dims():
    with pytest.raises(ValueError, match=r"cannot take a 2D spectrum of a tensor with shape \(5,\)"):
        high_frequency_torch(torch.zeros(5), radius=3, ndim=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_cuda_matches_numpy():
    """The float32 GPU result equals the NumPy (float64) version to float32 precision, batched
    and under fp16 autocast (the FFT runs in complex64 with autocast disabled); a half input
    is computed from its float32 value."""
    x = np.random.default_rng(4).normal(size=(2, 1, 32, 32, 32)).astype(np.float32) * 5
    expected = np.stack([high_frequency(v, radius=15) for v in x[:, 0]])[:, None]
    scale = np.abs(expected).max()
    gpu = high_frequency_torch(torch.from_numpy(x).cuda(), radius=15)
    assert gpu.dtype == torch.float32 and gpu.is_cuda and gpu.shape == x.shape
    np.testing.assert_allclose(gpu.cpu().numpy(), expected, rtol=1e-4, atol=1e-5 * scale)
    with torch.autocast("cuda", dtype=torch.float16):
        amp = high_frequency_torch(torch.from_numpy(x).cuda(), radius=15)
    assert amp.dtype == torch.float32
    np.testing.assert_allclose(amp.cpu().numpy(), expected, rtol=1e-4, atol=1e-5 * scale)
    # a half-precision input: the same as NumPy on its float32 value
    xh = torch.from_numpy(x).half()
    half = high_frequency_torch(xh.cuda(), radius=15)
    want = np.stack([high_frequency(v, radius=15) for v in xh.float().numpy()[:, 0]])[:, None]
    assert half.dtype == torch.float32
    np.testing.assert_allclose(half.cpu().numpy(), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
