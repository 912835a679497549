"""High-frequency conditioning image (METHOD.md §3).

F = fftshift(FFT(x)) over all spatial axes. Where the index distance of a frequency from the
centre (N//2 per axis, Euclidean, in index units) is below ``radius`` the amplitude is set to 1
(not 0); elsewhere it is kept. The phase is kept everywhere. HF = real(IFFT(ifftshift(F'))).
No rescaling.

The low-frequency test uses squared integer distances (``d² < r²``), so the NumPy and the
torch versions select exactly the same frequencies.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: CPU-only stages need not pay for it
    import torch


def _low_frequency_mask_np(shape: tuple[int, ...], radius: int) -> np.ndarray:
    """Boolean mask of the shifted spectrum: True where the index distance to N//2 is < radius."""
    d2 = np.zeros(shape, dtype=np.int64)
    for axis, n in enumerate(shape):
        offset = (np.arange(n, dtype=np.int64) - n // 2) ** 2
        d2 = d2 + offset.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return d2 < radius * radius


def high_frequency(image: np.ndarray, *, radius: int) -> np.ndarray:
    """High-frequency image of a 2D or 3D array at ``radius`` (computed in float64/complex128, float32 out)."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(f"high_frequency expects a 2D or 3D array, got shape {x.shape}")
    spec = np.fft.fftshift(np.fft.fftn(x))
    low = _low_frequency_mask_np(x.shape, radius)
    # Amplitude 1 with the original phase; exp(i*angle) is 1 where the spectrum is exactly 0.
    spec[low] = np.exp(1j * np.angle(spec[low]))
    out = np.fft.ifftn(np.fft.ifftshift(spec)).real
    return out.astype(np.float32)


def _low_frequency_mask_torch(shape: tuple[int, ...], radius: int, device: torch.device) -> torch.Tensor:
    import torch

    d2 = torch.zeros(shape, dtype=torch.int64, device=device)
    for axis, n in enumerate(shape):
        offset = (torch.arange(n, dtype=torch.int64, device=device) - n // 2) ** 2
        d2 = d2 + offset.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return d2 < radius * radius


def high_frequency_torch(x: torch.Tensor, *, radius: int, ndim: int | None = None) -> torch.Tensor:
    """Batched high-frequency image at ``radius``; the FFT runs over the last ``ndim`` dimensions.

    ``ndim`` defaults to 3 for tensors with >= 5 dims (B, C, D, H, W) and to 2 otherwise
    (e.g. (B, C, H, W) slices). All leading dims are batch dims. Computed in complex64
    (autocast disabled) on the tensor's device; returns float32 of the same shape.
    """
    import torch

    if ndim is None:
        ndim = 3 if x.dim() >= 5 else 2
    if ndim not in (2, 3) or x.dim() < ndim:
        raise ValueError(f"cannot take a {ndim}D spectrum of a tensor with shape {tuple(x.shape)}")
    dims = tuple(range(x.dim() - ndim, x.dim()))
    with torch.autocast(device_type=x.device.type, enabled=False):
        xf = x.to(torch.float32)
        spec = torch.fft.fftshift(torch.fft.fftn(xf, dim=dims), dim=dims)
        low = _low_frequency_mask_torch(tuple(x.shape[-ndim:]), radius, x.device)
        unit = torch.polar(torch.ones_like(spec.real), torch.angle(spec))
        spec = torch.where(low, unit, spec)
        out = torch.fft.ifftn(torch.fft.ifftshift(spec, dim=dims), dim=dims).real
    return out.contiguous()
