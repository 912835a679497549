"""Numerical precision and determinism of training (and validation) on a device."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from itermask.io.device import cuda_autocast_dtype


@dataclass(frozen=True)
class Precision:
    """Mixed-precision choice: autocast on/off, its dtype, and whether a GradScaler is needed."""

    autocast: bool
    dtype: torch.dtype
    scaler: bool

    def context(self, device_type: str) -> torch.autocast:
        """The autocast context of this choice on ``device_type``."""
        return torch.autocast(device_type, dtype=self.dtype, enabled=self.autocast)


def pick_precision(device_type: str, bf16_supported: bool | None = None) -> Precision:
    """Autocast (bf16 where supported, else fp16 + GradScaler) on CUDA; plain fp32 elsewhere."""
    if device_type != "cuda":
        return Precision(False, torch.float32, False)
    dtype = cuda_autocast_dtype(bf16_supported)
    return Precision(True, dtype, dtype == torch.float16)


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
