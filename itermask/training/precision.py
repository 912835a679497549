"""Numerical precision and determinism of training (and validation) on a device."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from itermask.io.device import autocast, autocast_dtype


@dataclass(frozen=True)
class Precision:
    """Mixed-precision choice of training steps: autocast on/off, its dtype, whether a
    GradScaler is needed; ``amp`` (config ``precision``) also sets the forward passes'."""

    autocast: bool
    dtype: torch.dtype
    scaler: bool
    amp: bool

    def context(self, device_type: str) -> torch.autocast:
        """The autocast context of training steps on ``device_type``."""
        return torch.autocast(device_type, dtype=self.dtype, enabled=self.autocast)

    def forward_context(self, device_type: str) -> torch.autocast:
        """The autocast context of forward passes (calibration), as inference's (``io.device.autocast``)."""
        return autocast(device_type, self.amp)


def pick_precision(device_type: str, amp: bool, bf16_supported: bool | None = None) -> Precision:
    """Training steps autocast at ``autocast_dtype(..., training=True)`` (``amp``: config
    ``precision``), a GradScaler only for fp16 on CUDA; plain fp32 where that dtype is None."""
    dtype = autocast_dtype(device_type, amp, training=True, bf16_supported=bf16_supported)
    if dtype is None:
        return Precision(False, torch.float32, False, amp)
    return Precision(True, dtype, dtype == torch.float16 and device_type == "cuda", amp)


@contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """Use deterministic algorithms (CPU) inside the block; restore the previous setting after."""
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
