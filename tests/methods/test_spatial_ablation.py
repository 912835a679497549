"""-spatial (variant no_spatial, METHOD.md §6, issue 10): one reconstruction from the
high-frequency image alone, no masked iterations, in 2D (IterMask2) and 3D (IterMask3D)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from support import run2d_settings

from itermask.core.iterative_mask_2d import run_itermask2

torch.set_num_threads(1)


class Const(nn.Module):
    """Reconstruction = a fixed image per call count; records its inputs."""

    def __init__(self, recon: torch.Tensor) -> None:
        super().__init__()
        self.recon, self.calls = recon, 0

    def forward(self, inp):
        self.calls += 1
        return self.recon.expand(inp.shape[0], 1, *self.recon.shape[-2:]).clone()


def _slices():
    g = torch.Generator().manual_seed(0)
    x = torch.randn((2, 8, 8), generator=g)
    brain = torch.zeros((2, 8, 8), dtype=torch.bool)
    brain[:, 1:7, 1:7] = True
    return x, x * 0.5, brain


def test_2d_single_step_is_the_first_models_reconstruction_thresholded_once():
    x, hf, brain = _slices()
    first, masked = Const(torch.zeros((1, 1, 8, 8))), Const(torch.ones((1, 1, 8, 8)))
    kw = run2d_settings(max_iterations=10)  # the schema's settings but max_iterations
    res = run_itermask2(first, masked, x, hf, brain, [1, 2], tau=0.5, **{**kw, "single_step": True})
    assert masked.calls == 0 and first.calls == 1
    for k, r in enumerate(res):
        e1 = torch.where(brain[k], x[k] ** 2, torch.zeros(()))
        torch.testing.assert_close(r.error, e1)
        torch.testing.assert_close(r.recon, torch.zeros((8, 8)))
        assert torch.equal(r.mask, (e1 > 0.5) & brain[k]) and r.iterations == 0
    full = run_itermask2(first, masked, x, hf, brain, [1, 2], tau=0.5, **kw)  # single_step False
    assert masked.calls > 0 and not torch.equal(full[0].error, res[0].error)  # the full method differs


def test_itermask2_no_spatial_experiment_runs_no_masked_iteration(tmp_path, monkeypatch):
    from support import experiment_settings

    from itermask.inference import stage

    x, hf, brain = _slices()
    path = tmp_path / "slices.npz"
    np.savez(path, image=x.numpy(), hf=hf.numpy(), brain=brain.numpy(), label=np.zeros_like(brain.numpy()),
             index=np.array([70, 71]), role=np.array("test"))
    nets = {"first": Const(torch.zeros((1, 1, 8, 8))), "masked": Const(torch.ones((1, 1, 8, 8)))}
    meta = {"method": "itermask2", "variant": "full", "hf_radius": 3, "network": {"image_size": 8},
            "calibration": {"tau": 0.5, "percentile": 80.0}}
    monkeypatch.setattr(stage, "load_trained", lambda p, d, channels_last: (nets, meta))
    cfg = experiment_settings("itermask2", "no_spatial", hf_radius=3, model_from=True)
    stage.infer_subject("m.pt", {"lesion": {"slices": str(path)}}, cfg, str(tmp_path / "o"), dataset="ds",
                        subject="01", device="cpu", amp=False, channels_last=True, field_of_view_mm=240.0, log=lambda m: None)
    import json

    res = json.loads((tmp_path / "o" / "lesion" / "result.json").read_text())
    assert nets["masked"].calls == 0 and res["threshold"] == "single_step" and res["iterations"] == [0, 0]
    want = int(((x ** 2 > 0.5) & brain).sum())
    assert res["scores"]["mask_size_voxels"] == want


class Recording3d(nn.Module):
    """Reconstruction = 0 everywhere; records every input batch."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, inp):
        self.inputs.append(inp.clone())
        return torch.zeros_like(inp[:, :1])


def test_itermask3d_no_spatial_experiment_is_one_whole_brain_reconstruction(tmp_path, monkeypatch):
    """3D -spatial: one forward pass with the whole brain masked (the image channel is fill noise
    in the brain, x outside; the HF channel is the HF image), its error thresholded once at the
    calibrated tau: mask = (x - recon)^2 > tau in the brain."""
    import json

    import nibabel as nib
    from support import experiment_settings

    from itermask.inference import stage

    g = torch.Generator().manual_seed(1)
    x = torch.randn((16, 16, 16), generator=g)
    hf = 0.3 * torch.randn((16, 16, 16), generator=g)
    brain = torch.zeros((16, 16, 16), dtype=torch.bool)
    brain[2:10, 3:9, 2:11] = True
    files = {}
    for name, arr in (("image", x.numpy()), ("hf", hf.numpy()), ("brain", brain.numpy().astype(np.uint8))):
        files[name] = str(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(arr, np.eye(4)), files[name])
    net = Recording3d()
    meta = {"method": "itermask3d", "variant": "full", "hf_radius": 3, "spatial_dims": 3,
            "calibration": {"tau": 0.5, "percentile": 80.0}}
    monkeypatch.setattr(stage, "load_trained", lambda p, d, channels_last: ({"masked": net}, meta))
    cfg = experiment_settings("itermask3d", "no_spatial", hf_radius=3, model_from=True)
    stage.infer_subject("m.pt", {"lesion": {**files, "label": None}}, cfg, str(tmp_path / "o"), dataset="ds",
                        subject="01", device="cpu", amp=False, channels_last=True, field_of_view_mm=24.0, log=lambda m: None)
    assert len(net.inputs) == 1 and net.inputs[0].shape == (1, 2, 16, 16, 16)
    image, guide = net.inputs[0][0, 0], net.inputs[0][0, 1]
    assert torch.equal(image[~brain], x[~brain]) and not torch.isclose(image[brain], x[brain]).any()
    torch.testing.assert_close(guide, hf)
    folder = tmp_path / "o" / "lesion"
    res = json.loads((folder / "result.json").read_text())
    assert res["threshold"] == "single_step" and res["tau"] == 0.5 and res["iterations_b"] == 1
    mask = nib.load(str(folder / "mask.nii.gz")).get_fdata() > 0
    np.testing.assert_array_equal(mask, ((x ** 2 > 0.5) & brain).numpy())
