"""itermask.io.device.resolve_device: the one device resolver of every stage."""
import pytest
import torch

from itermask.io.device import resolve_device
from itermask.errors import ConfigError
from itermask.io.workflow import device_of


def test_auto_picks_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device().type == expected


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


def test_workflow_scripts_get_a_resolved_name():
    assert device_of(_Smk("cpu")) == "cpu"
    assert device_of(_Smk("auto")) == str(resolve_device("auto"))
    with pytest.raises(ConfigError):
        device_of(_Smk("tpu"))


def test_one_autocast_dtype_for_every_cuda_stage():
    from itermask.io.device import cuda_autocast_dtype
    from itermask.training.precision import pick_precision

    assert cuda_autocast_dtype(True) == torch.bfloat16 and cuda_autocast_dtype(False) == torch.float16
    for bf16 in (True, False):
        assert pick_precision("cuda", bf16).dtype == cuda_autocast_dtype(bf16)


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

    reconstruct(Probe(), torch.zeros(1, 1, 4, 4, device="cuda"))
    assert seen == [pick_precision("cuda").dtype]
