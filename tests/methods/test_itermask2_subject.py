"""IterMask2 with IterMask3D's subject-specific tau (infer.threshold: subject, IterMask3D Table 6
"adaptive"): each slice's own phase-A tau replaces the calibration tau."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from inference_fakes import S, Oracle, dice
from support import experiment_settings

from itermask.errors import ConfigError
from itermask.inference import stage

torch.set_num_threads(1)

FRACTIONS = (1 / 6, 1 / 3)
CALIBRATION_TAU = 50.0  # far above the anomaly's error (~4): the fixed tau finds nothing


def _anomaly_slices(tmp_path):
    """Two slices, brain 24x24, anomaly rows covering FRACTIONS of it (x = h + 2 there)."""
    n, g = len(FRACTIONS), torch.Generator().manual_seed(3)
    brain = np.zeros((n, S, S), bool)
    brain[:, 4:28, 4:28] = True
    anomaly = np.zeros_like(brain)
    for k, f in enumerate(FRACTIONS):
        anomaly[k, 4:4 + round(24 * f), 4:28] = True
    h = torch.randn((n, S, S), generator=g).numpy()
    x = (h + 2.0 * anomaly + 1e-3 * torch.rand((n, S, S), generator=g).numpy()).astype(np.float32)
    hf = (x + 60.0 + np.arange(n)[:, None, None]).astype(np.float32)  # identifies the slice for the Oracle
    path = tmp_path / "slices.npz"
    np.savez(path, image=x, hf=hf, brain=brain, label=anomaly, index=np.array([70, 71]), role=np.array("test"))
    entries = [(torch.from_numpy(hf[k]), torch.from_numpy(x[k]), torch.from_numpy(h[k])) for k in range(n)]
    return path, entries, anomaly


def _run(tmp_path, monkeypatch, folder, infer):
    path, entries, anomaly = _anomaly_slices(tmp_path)
    healthy = Oracle(entries, lambda x_, h_, m: h_)  # perfect outside the anomaly (but for the wobble)
    nets = {"first": healthy, "masked": healthy}
    meta = {"method": "itermask2", "variant": "full", "hf_radius": 3, "network": {"image_size": S},
            "calibration": {"tau": CALIBRATION_TAU, "percentile": 80.0}}
    monkeypatch.setattr(stage, "load_trained", lambda p, d, channels_last: (nets, meta))
    cfg = experiment_settings("itermask2", infer={"max_iterations": 5, "oracle_tau_factors": [], **infer}, hf_radius=3)
    out = tmp_path / folder
    stage.infer_subject("m.pt", {"lesion": {"slices": str(path)}}, cfg, str(out), dataset="ds", subject="01",
                        device="cpu", amp=False, channels_last=True, field_of_view_mm=None, log=lambda m: None)
    mask = nib.load(str(out / "lesion" / "mask.nii.gz")).get_fdata() > 0  # (H, W, n)
    return json.loads((out / "lesion" / "result.json").read_text()), np.moveaxis(mask, -1, 0), anomaly


def test_subject_tau_per_slice_finds_the_anomaly_the_fixed_tau_misses(tmp_path, monkeypatch):
    fixed, fixed_mask, anomaly = _run(tmp_path, monkeypatch, "fixed", {})
    assert fixed["threshold"] == "calibration" and fixed["tau"] == CALIBRATION_TAU
    assert not fixed_mask.any() and "subject_tau" not in fixed
    own, own_mask, _ = _run(tmp_path, monkeypatch, "subject", {"threshold": "subject", "step_percent": 1})
    assert own["threshold"] == "subject" and own["calibration_tau"] == CALIBRATION_TAU
    assert len(own["subject_tau"]) == len(own["k_star"]) == len(own["curves"]) == len(own["fits"]) == 2
    assert own["tau"] == pytest.approx(float(np.median(own["subject_tau"])))
    for k, f in enumerate(FRACTIONS):
        t_star = own["percents"][own["k_star"][k]]
        assert abs((100 - t_star) / 100 - f) <= 0.03  # the tau sits where the anomaly's share begins
        assert own["subject_tau"][k] < 1e-3 and own["fits"][k]["tau"] == own["subject_tau"][k]
        assert dice(own_mask[k], anomaly[k]) > 0.9
        assert len(own["curves"][k]) == 100 and not {"t", "derivative"} & set(own["fits"][k])
    assert own["gamma"] == 0.01 and own["step_percent"] == 1.0 and own["k_fallback"] == "first"
    assert own["fine_from_percent"] is None and own["percents"] == list(range(1, 101))


class HalfHF(nn.Module):
    """Reconstruction = the HF channel scaled: a mask-independent, slice-dependent network."""

    def forward(self, inp):
        return 0.5 * inp[:, -1:]


def test_slicewise_volume_records_tau_and_k_star_per_slice_without_curves(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(4)
    vol = torch.randn((16, 16, 12), generator=g).numpy().astype(np.float32)
    brain = np.zeros(vol.shape, np.uint8)
    brain[3:13, 3:13, 2:10] = 1
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    files = {}
    for name, arr in (("image", vol), ("brain", brain)):
        files[name] = str(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(arr, affine), files[name])
    nets = {"first": HalfHF(), "masked": HalfHF()}
    meta = {"method": "itermask2", "variant": "full", "hf_radius": 3, "network": {"image_size": 16},
            "calibration": {"tau": 0.5, "percentile": 80.0}}
    monkeypatch.setattr(stage, "load_trained", lambda p, d, channels_last: (nets, meta))
    cfg = experiment_settings("itermask2", infer={"threshold": "subject", "step_percent": 5, "max_iterations": 3},
                              hf_radius=3)
    stage.infer_subject("m.pt", {"healthy": {**files, "label": None}}, cfg, str(tmp_path / "out"), dataset="ds",
                        subject="01", device="cpu", amp=False, channels_last=True, field_of_view_mm=32.0, log=lambda m: None)
    res = json.loads((tmp_path / "out" / "healthy" / "result.json").read_text())
    assert res["kind"] == "slicewise" and len(res["slices"]) == 8
    assert len(res["subject_tau"]) == len(res["k_star"]) == 8 and len(set(res["subject_tau"])) > 1
    assert "curves" not in res and "fits" not in res


def test_settings_check():
    assert experiment_settings("itermask2").infer["threshold"] == "fixed"  # the IterMask2 paper's rule
    assert experiment_settings("itermask2", infer={"threshold": "subject"}).infer["gamma"] == 0.01
    with pytest.raises(ConfigError, match="step_percent"):
        experiment_settings("itermask2", infer={"threshold": "subject", "step_percent": 7})
    with pytest.raises(ConfigError, match="no_spatial"):
        experiment_settings("itermask2", "no_spatial", infer={"threshold": "subject"}, model_from=True)
    experiment_settings("itermask2", "no_spatial", model_from=True)  # fixed: fine
