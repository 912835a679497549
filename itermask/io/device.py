"""The compute device, chosen at run time: one resolver for every stage (config ``device``)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from itermask.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(device: "str | torch.device" = "auto") -> "torch.device":
    """"auto" -> CUDA when available, else CPU; "cpu", "cuda" or "cuda:N" as named.

    Raises ConfigError for another name, or for CUDA on a machine without it.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(device))
    except RuntimeError:
        dev = None  # not a device name torch knows
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got '{device}'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but CUDA is not available")
    return dev


def cuda_autocast_dtype(bf16_supported: bool | None = None) -> "torch.dtype":
    """The autocast dtype of every CUDA stage: bf16 where the GPU supports it, else fp16 (whose
    training then needs a GradScaler). One choice for training, calibration and inference, so
    that a tau calibrated after training is applied to reconstructions of the same precision."""
    import torch

    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16_supported else torch.float16
