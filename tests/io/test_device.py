"""itermask.io.device.resolve_device: the one device resolver of every stage."""
import pytest
import torch

from itermask.io.device import resolve_device
from itermask.errors import ConfigError
from itermask.io.workflow import device_of


def test_auto_picks_cuda_only_when_available(monkeypatch):
    # names only: torch.device("cuda") creates no tensor, so this runs on CPU-only machines too
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"


def test_named_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu", "", "cuda:x"])
def test_unknown_device_names_the_setting(name):
    with pytest.raises(ConfigError, match="device must be"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_a_config_error(name):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_when_available():
    assert resolve_device("cuda").type == "cuda"


class _Smk:
    def __init__(self, device):
        self.config = {} if device is None else {"device": device}


def test_workflow_scripts_get_a_resolved_name(monkeypatch):
    assert device_of(_Smk("cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_of(_Smk("auto")) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_of(_Smk("auto")) == "cpu"
    with pytest.raises(ConfigError):
        device_of(_Smk("tpu"))


def test_one_autocast_dtype_per_device_for_every_stage(monkeypatch):
    from itermask.io.device import autocast_dtype, precision_label
    from itermask.training.precision import pick_precision

    # amp True: config precision auto
    assert autocast_dtype("cuda", True, bf16_supported=True) == torch.bfloat16
    assert autocast_dtype("cuda", True, bf16_supported=False) == torch.float16
    assert autocast_dtype("cpu", True, bf16_supported=True) == torch.bfloat16  # forward passes
    assert autocast_dtype("cpu", True, bf16_supported=False) is None  # emulated bf16 is slower than fp32
    assert autocast_dtype("cpu", True, training=True, bf16_supported=True) is None  # CPU training steps: fp32
    for device in ("cpu", "cuda"):
        assert autocast_dtype(device, False, bf16_supported=True) is None  # config precision: fp32
        for bf16 in (True, False):
            p = pick_precision(device, True, bf16)
            assert (p.dtype if p.autocast else None) == autocast_dtype(device, True, training=True,
                                                                       bf16_supported=bf16)
    assert pick_precision("cuda", True, True).dtype == autocast_dtype("cuda", True, bf16_supported=True)  # one for all
    assert precision_label("cpu", False) == "fp32" and precision_label("cpu", True, training=True) == "fp32"
    # the GPU's bf16 support decides the CUDA dtype (queried by name only: no CUDA tensor is made)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype("cuda", True) == torch.bfloat16
    assert precision_label("cuda", True) == "autocast bfloat16"
    assert precision_label("cuda", True, training=True) == "autocast bfloat16"
    assert precision_label("cuda", False) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype("cuda", True) == torch.float16
    assert precision_label("cuda", True) == "autocast float16"
    assert precision_label("cuda", True, training=True) == "autocast float16"


def test_cpu_bf16_only_where_the_cpu_has_it(monkeypatch):
    from itermask.io import device

    for avx512_bf16, amx, want in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert device.cpu_has_native_bf16() is want
        assert device.autocast_dtype("cpu", True) == (torch.bfloat16 if want else None)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")  # a torch without the private query
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert device.cpu_has_native_bf16() is False


def test_cpu_inference_reconstructs_at_the_calibrations_precision(monkeypatch):
    """On a CPU with bf16, the calibration after training (``Precision.forward_context``) and
    inference (``lockstep.reconstruct``) autocast alike, training steps do not; ``amp=False``
    (config precision: fp32) runs fp32."""
    from itermask.core.lockstep import reconstruct
    from itermask.io import device
    from itermask.training.precision import pick_precision

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
            return torch.nn.functional.linear(x, torch.eye(4))

    out = reconstruct(Probe(), torch.zeros(1, 1, 4, 4), amp=True)
    assert out.dtype == torch.float32  # float32 out, whatever ran inside
    reconstruct(Probe(), torch.zeros(1, 1, 4, 4), amp=False)
    precision = pick_precision("cpu", True)
    for context in (precision.forward_context("cpu"), precision.context("cpu")):
        with context:
            Probe()(torch.zeros(1, 4))
    assert seen == [torch.bfloat16, None, torch.bfloat16, None]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_inference_reconstructs_at_the_training_precision():
    """Calibration (training's precision) and inference (lockstep.reconstruct) autocast alike."""
    from itermask.core.lockstep import reconstruct
    from itermask.training.precision import pick_precision

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_autocast_dtype("cuda"))
            return x

    reconstruct(Probe(), torch.zeros(1, 1, 4, 4, device="cuda"), amp=True)
    assert seen == [pick_precision("cuda", True).dtype]
