"""The compute device, chosen at run time: one resolver for every stage (config ``device``)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from itermask.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(device: "str | torch.device") -> "torch.device":
    """``device`` (config ``device``; the schema's default "auto"): "auto" -> CUDA when available,
    else CPU; "cpu", "cuda" or "cuda:N" as named.

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


def cpu_has_native_bf16() -> bool:
    """Does this CPU compute bf16 in hardware (AVX512_BF16 or AMX)? Elsewhere oneDNN emulates
    bf16, which is slower than fp32 (measured 2.3x per 3D training step with AVX-512, 21x with AVX2)."""
    import torch

    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence the guard
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def autocast_dtype(device_type: str, amp: bool, *, training: bool = False,
                   bf16_supported: bool | None = None) -> "torch.dtype | None":
    """The autocast dtype on ``device_type`` of training steps (``training``) or of forward
    passes (calibration, inference); None for plain fp32.

    With ``amp`` (config ``precision: auto``): on CUDA bf16 where the GPU supports it, else
    fp16 (whose training then needs a GradScaler), for both. On CPU, forward passes in bf16
    where the CPU has it in hardware (``cpu_has_native_bf16``; at the demo size 1.5x a lockstep
    forward, 5x a batch-1 forward, which fp32 runs in PyTorch's slow_conv3d; reconstructions
    within 0.006 on average of fp32's), else fp32; training steps in fp32: oneDNN's bf16
    convolution gradients are far from fp32's (relative error 0.18 at the demo size, NaN when a
    level is 2 voxels wide). Calibration and inference use the same forward precision, so a tau
    calibrated after training applies to reconstructions of that precision. Without ``amp``
    (``precision: fp32``): fp32 everywhere. ``bf16_supported`` overrides the hardware query (tests).
    """
    import torch

    if not amp or device_type not in ("cuda", "cpu"):
        return None
    if device_type == "cuda":
        bf16 = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
        return torch.bfloat16 if bf16 else torch.float16
    if training:
        return None
    bf16 = cpu_has_native_bf16() if bf16_supported is None else bf16_supported
    return torch.bfloat16 if bf16 else None


def precision_label(device_type: str, amp: bool, *, training: bool = False) -> str:
    """"autocast bfloat16", "autocast float16" or "fp32" (``autocast_dtype``): the training
    log, model file and result.json."""
    dtype = autocast_dtype(device_type, amp, training=training)
    return "fp32" if dtype is None else "autocast " + str(dtype).removeprefix("torch.")


def precision_labels(device_type: str, amp: bool) -> dict[str, str]:
    """``{"precision": training steps', "forward_precision": calibration's and inference's}``
    (``precision_label``): the training log and the model file."""
    return {"precision": precision_label(device_type, amp, training=True),
            "forward_precision": precision_label(device_type, amp)}


def autocast(device_type: str, amp: bool) -> "torch.autocast":
    """``torch.autocast`` of forward passes (calibration, inference) at
    ``autocast_dtype(device_type, amp)``; disabled where that is None (config ``precision: fp32``
    sets ``amp`` False)."""
    import torch

    dtype = autocast_dtype(device_type, amp)
    return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)
