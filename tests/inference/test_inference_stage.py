"""Inference stage (METHOD.md §6): infer_subject outputs, re-threshold, tau percentile.

Fake networks with known reconstructions (tests/inference_fakes.py) make the expected
masks/thresholds computable independently of the code under test.
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from inference_fakes import S, FillPassThrough, Oracle, cube_subject, dice, inpaint_rule
from support import experiment_settings

from itermask.core.threshold import subject_threshold
from itermask.errors import ConfigError, InputError
from itermask.inference import rethreshold as rethreshold_module
from itermask.inference import stage as inference
from itermask.inference.rethreshold import rethreshold
from itermask.inference.tau import calibration_tau

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------
# Stage functions
# ----------------------------------------------------------------------------------------
AFFINE = np.array([[-2.0, 0, 0, 40.0], [0, 2.0, 0, -50.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1]])
FOV = 2.0 * S  # the 2D field of view: the whole box (2 mm voxels)


def _write(path, arr):
    nib.save(nib.Nifti1Image(np.asarray(arr), AFFINE), str(path))
    return str(path)


def _subject_files(tmp_path, seed, lo, hi):
    x, hf, brain, h, anomaly = cube_subject(seed, lo, hi)
    d = tmp_path / f"in{seed}"
    d.mkdir()
    cond = {"image": _write(d / "image.nii.gz", x.numpy()), "hf": _write(d / "hf.nii.gz", hf.numpy()),
            "brain": _write(d / "brain.nii.gz", brain.numpy().astype(np.uint8)),
            "label": _write(d / "label.nii.gz", anomaly.numpy().astype(np.uint8))}
    return cond, (hf, x, h), anomaly


def _fake_loader(monkeypatch, models, meta):
    """Serve ``models`` and ``meta`` for any model path (stage and re-threshold)."""
    def load(path, device, *, channels_last):
        return models, meta

    monkeypatch.setattr(inference, "load_trained", load)
    monkeypatch.setattr(rethreshold_module, "load_trained", load)


def infer(model, conditions, settings, out):
    inference.infer_subject(model, conditions, settings, str(out), dataset="ds", subject=out.name.replace("sub-", ""),
                            device="cpu", amp=False, channels_last=True, field_of_view_mm=FOV, log=lambda m: None)


def test_inference_records_its_precision_and_rethreshold_reuses_it(tmp_path, monkeypatch):
    """precision auto on a CPU with bf16: the reconstructions autocast (bf16) and result.json says
    so; a re-threshold of that run keeps its setting (bf16 where the machine has it, else fp32)."""
    from itermask.core import lockstep
    from itermask.io import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
            return x[:, :1] * 1.0

    _fake_loader(monkeypatch, {"masked": Probe()}, {"method": "itermask3d", "variant": "full", "hf_radius": 15,
                                                    "spatial_dims": 3})
    cond, _, _ = _subject_files(tmp_path, 7, (9, 9, 9), (16, 16, 16))
    cfg = experiment_settings("itermask3d", infer={"step_percent": 50, "max_iterations": 2})
    out = tmp_path / "sub-01"
    inference.infer_subject("model.pt", {"lesion": cond}, cfg, str(out), dataset="ds", subject="01", device="cpu",
                            amp=True, channels_last=True, field_of_view_mm=FOV, log=lambda m: None)
    res = json.loads((out / "lesion" / "result.json").read_text())
    assert res["amp"] is True and res["precision"] == "autocast bfloat16"
    assert seen and set(seen) == {torch.bfloat16}
    seen.clear()
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)  # another machine: fp32 there
    rethreshold("model.pt", str(out / "lesion"), 1.0, device="cpu")
    assert seen and set(seen) == {None}
    seen.clear()
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    rethreshold("model.pt", str(out / "lesion"), 1.0, device="cpu")
    assert seen and set(seen) == {torch.bfloat16}
    assert lockstep.autocast is device.autocast  # one autocast for every stage


def test_infer_subject_3d_writes_everything_and_rethreshold(tmp_path, monkeypatch):
    c1, e1, a1 = _subject_files(tmp_path, 7, (9, 9, 9), (16, 16, 16))
    c2, e2, a2 = _subject_files(tmp_path, 8, (15, 12, 10), (21, 18, 17))
    c2["label"] = None
    model = Oracle([e1, e2], inpaint_rule)
    meta = {"method": "itermask3d", "variant": "full", "hf_radius": 15, "spatial_dims": 3}
    _fake_loader(monkeypatch, {"masked": model}, meta)
    cfg = experiment_settings("itermask3d", infer={"step_percent": 5, "gamma": 0.01, "y_limit": 10.0, "r2_min": 0.85,
                                                   "threshold": "subject", "tol": 0.01, "max_iterations": 10,
                                                   "batch_size": 2, "score": "mask_size",
                                                   "oracle_tau_factors": [0.5, 1.0, 2.0]})  # schema: [] (off)
    out = tmp_path / "out" / "sub-01"
    infer("model.pt", {"lesion": c1, "healthy": c2}, cfg, out)
    for name, cond, anomaly in (("lesion", c1, a1), ("healthy", c2, a2)):
        folder = out / name
        for f in ("recon", "error", "mask", "brainmask"):
            img = nib.load(str(folder / f"{f}.nii.gz"))
            np.testing.assert_allclose(img.affine, AFFINE)
            assert img.shape == (S, S, S)
        assert nib.load(str(folder / "mask.nii.gz")).get_data_dtype() == np.uint8
        assert (folder / "label.nii.gz").exists() == (cond["label"] is not None)
        # the per-image-best oracle (uses the test label) only where a label exists
        assert (folder / "mask_oracle.nii.gz").exists() == (cond["label"] is not None)
        assert (folder / "curve.png").stat().st_size > 1000
        res = json.loads((folder / "result.json").read_text())
        assert res["kind"] == "3d" and res["threshold"] == "subject" and res["iterations_a"] == 20
        assert res["amp"] is False and res["precision"] == "fp32"  # infer(): config precision fp32
        assert len(res["curve"]) == 20 and res["percents"][-1] == 100.0
        assert res["tau"] == res["fit"]["tau"] == res["subject_tau"]
        # known answer: tau is subject_threshold of the recorded curve with the configured settings
        fit = subject_threshold(res["curve"], gamma=0.01, y_limit=10.0, r2_min=0.85, t=res["percents"],
                                no_exceed="first", scale_at=None)
        assert res["tau"] == fit.tau and res["k_star"] == fit.k and res["fit"]["branch"] == fit.branch
        assert res["inputs"]["image"] == cond["image"]
        mask = nib.load(str(folder / "mask.nii.gz")).get_fdata() > 0
        brain = nib.load(cond["brain"]).get_fdata() > 0
        assert res["scores"]["mask_size_voxels"] == mask.sum()
        assert res["score"] == mask.sum()  # the papers' score: voxels of the final mask
        error = nib.load(str(folder / "error.nii.gz")).get_fdata()
        np.testing.assert_array_equal(mask, (error > res["tau"]) & brain)
        if cond["label"] is not None:
            o = res["oracle"]
            assert o["uses_test_labels"] is True and o["iteration"] >= 1
            assert any(o["tau"] == res["tau"] * f for f in o["tau_factors"])
            best = nib.load(str(folder / "mask_oracle.nii.gz")).get_fdata() > 0
            assert o["dice"] == pytest.approx(dice(best, anomaly.numpy())) and o["dice"] >= dice(mask, anomaly.numpy())
    # the second batch slot took subject 2 alongside subject 1
    assert max(model.batch_sizes) == 2

    # human in the loop: the original tau gives back the original mask; a new tau a new file
    lesion = out / "lesion"
    orig_bytes = (lesion / "mask.nii.gz").read_bytes()
    res = json.loads((lesion / "result.json").read_text())
    same = rethreshold("model.pt", str(lesion), res["tau"], device="cpu", out_name="mask_same.nii.gz")
    np.testing.assert_array_equal(nib.load(str(same)).get_fdata(), nib.load(str(lesion / "mask.nii.gz")).get_fdata())
    from itermask.cli import main

    assert main(["rethreshold", "--model", "model.pt", "--condition-dir", str(lesion), "--tau", "0.5",
                 "--device", "cpu"]) == 0
    new = lesion / "mask_tau-0.5.nii.gz"
    new_mask = nib.load(str(new)).get_fdata() > 0
    np.testing.assert_allclose(nib.load(str(new)).affine, AFFINE)
    x = nib.load(c1["image"]).get_fdata(dtype=np.float32)
    brain = nib.load(c1["brain"]).get_fdata() > 0
    h = e1[2].numpy()
    np.testing.assert_array_equal(new_mask, ((x - h) ** 2 > 0.5) & brain)   # converged at tau 0.5
    info = json.loads((lesion / "mask_tau-0.5.json").read_text())
    assert info["tau"] == 0.5 and info["converged"]
    assert (lesion / "mask.nii.gz").read_bytes() == orig_bytes


def test_rethreshold_replays_the_runs_own_noise(tmp_path, monkeypatch):
    """At the run's tau, re-thresholding gives back the run's mask only because phase B is rerun
    on the run's seed: with a network whose output is the fill noise, another seed in
    result.json gives another mask."""
    cond, _, _ = _subject_files(tmp_path, 7, (9, 9, 9), (16, 16, 16))
    _fake_loader(monkeypatch, {"masked": FillPassThrough()},
                 {"method": "itermask3d", "variant": "full", "hf_radius": 15, "spatial_dims": 3})
    cfg = experiment_settings("itermask3d", infer={"step_percent": 5, "max_iterations": 10})
    out = tmp_path / "sub-01"
    infer("model.pt", {"lesion": cond}, cfg, out)
    folder = out / "lesion"
    res = json.loads((folder / "result.json").read_text())
    mask = nib.load(str(folder / "mask.nii.gz")).get_fdata() > 0
    brain = nib.load(cond["brain"]).get_fdata() > 0
    assert 0 < mask.sum() < brain.sum()
    same = rethreshold("model.pt", str(folder), res["tau"], device="cpu", out_name="mask_same.nii.gz", log=lambda m: None)
    np.testing.assert_array_equal(nib.load(str(same)).get_fdata() > 0, mask)
    (folder / "result.json").write_text(json.dumps({**res, "seed": res["seed"] + 1}))
    other = rethreshold("model.pt", str(folder), res["tau"], device="cpu", out_name="mask_other.nii.gz", log=lambda m: None)
    assert ((nib.load(str(other)).get_fdata() > 0) != mask).any()


@pytest.mark.parametrize("content, message", [
    (None, "no result.json: not an inference condition folder"),
    ("[1, 2]", "result.json does not hold an inference record"),
    ('{"method": "itermask3d", "inputs": {}}', "does not record the run's precision"),
    ('{"method": "itermask3d", "amp": "yes", "inputs": {}}', "does not record the run's precision"),
    ('{"method": "itermask3d", "amp": false, "inputs": {"image": "gone.nii.gz"}}', "input of the original run not found"),
])
def test_rethreshold_refuses_a_folder_it_cannot_rerun(tmp_path, content, message):
    """``read_previous``: the condition folder's result.json must exist, hold a record and name
    inputs that still exist; each failure names the file (damaged JSON, another method's model:
    tests/test_cli.py)."""
    folder = tmp_path / "lesion"
    folder.mkdir()
    if content is not None:
        (folder / "result.json").write_text(content)
    with pytest.raises(InputError, match=message) as err:
        rethreshold_module.read_previous(folder, {"method": "itermask3d"}, "m.pt")
    assert str(folder) in str(err.value) or "gone.nii.gz" in str(err.value)
    image = tmp_path / "image.nii.gz"
    image.write_bytes(b"")
    (folder / "result.json").write_text(json.dumps({"method": "itermask3d", "amp": False, "inputs": {"image": str(image)}}))
    assert rethreshold_module.read_previous(folder, {"method": "itermask3d"}, "m.pt")["inputs"]["image"] == str(image)


def test_subject_tau_follows_the_configured_threshold_settings(tmp_path, monkeypatch):
    """Each run's tau is subject_threshold of its own recorded curve with that run's gamma, y_limit,
    r2_min and k_fallback; the settings reach it (the fit's k*, branch and n_fit change with them)."""
    c1, e1, _ = _subject_files(tmp_path, 7, (9, 9, 9), (16, 16, 16))
    _fake_loader(monkeypatch, {"masked": Oracle([e1], inpaint_rule)},
                 {"method": "itermask3d", "variant": "full", "hf_radius": 15, "spatial_dims": 3})
    base = {"gamma": 0.01, "y_limit": 10.0, "r2_min": 0.85, "k_fallback": "first"}
    runs = [base, {**base, "gamma": 0.001}, {**base, "gamma": 0.5, "k_fallback": "last"},
            {**base, "r2_min": 0.99}, {**base, "y_limit": 0.1}]
    fits, curves = [], []
    for i, th in enumerate(runs):
        cfg = experiment_settings("itermask3d", infer={"step_percent": 5, "max_iterations": 10, "batch_size": 1,
                                                       "threshold": "subject", **th})
        infer("model.pt", {"lesion": c1}, cfg, tmp_path / f"run{i}" / "sub-01")
        res = json.loads((tmp_path / f"run{i}" / "sub-01" / "lesion" / "result.json").read_text())
        fit = subject_threshold(res["curve"], gamma=th["gamma"], y_limit=th["y_limit"], r2_min=th["r2_min"],
                                t=res["percents"], no_exceed=th["k_fallback"], scale_at=None)
        assert res["tau"] == fit.tau and res["k_star"] == fit.k, th
        assert (res["fit"]["gamma"], res["fit"]["branch"], res["fit"]["n_fit"], res["fit"]["fallback"]) == \
            (th["gamma"], fit.branch, fit.n_fit, fit.fallback), th
        fits.append(fit)
        curves.append(res["curve"])
    # the curve is the same in every run (same seed, subject, condition): only the settings differ
    assert all(c == curves[0] for c in curves)
    k = [f.k for f in fits]
    assert k[1] < k[0] < k[2] == 19 and fits[2].fallback == "last"  # smaller gamma: earlier k*; none exceeds 0.5
    assert fits[0].branch == "tangent" and fits[3].branch == "derivative"  # R^2 of the fit is between 0.85 and 0.99
    assert fits[4].n_fit < fits[0].n_fit  # the fit stops where the curve first exceeds y_limit


def test_labelled_validation_subject_gets_its_label_but_no_oracle(tmp_path, monkeypatch):
    """val_lesion (it sets the honest threshold): the label travels, the per-image-best oracle
    (an evaluation-only use of test labels) is not computed."""
    c1, e1, _ = _subject_files(tmp_path, 7, (9, 9, 9), (16, 16, 16))
    _fake_loader(monkeypatch, {"masked": Oracle([e1], inpaint_rule)},
                 {"method": "itermask3d", "variant": "full", "hf_radius": 15, "spatial_dims": 3})
    cfg = experiment_settings("itermask3d", infer={"step_percent": 5, "max_iterations": 10, "batch_size": 1})
    out = tmp_path / "out" / "sub-02"
    infer("model.pt", {"val_lesion": c1}, cfg, out)
    folder = out / "val_lesion"
    assert (folder / "label.nii.gz").exists() and (folder / "error.nii.gz").exists()
    assert not (folder / "mask_oracle.nii.gz").exists()
    assert "oracle" not in json.loads((folder / "result.json").read_text())

def test_infer_subject_fixed_threshold_and_bad_inputs(tmp_path, monkeypatch):
    c1, e1, a1 = _subject_files(tmp_path, 9, (9, 9, 9), (16, 16, 16))
    model = Oracle([e1], inpaint_rule)
    pct = list(range(1, 100))  # the calibration written when training ends: quantile p = p / 80
    meta = {"method": "itermask3d", "variant": "full", "hf_radius": 15,
            "calibration": {"tau": 1.0, "percentile": 80.0, "quantile_percentiles": pct,
                            "quantiles": [p / 80 for p in pct]}}
    _fake_loader(monkeypatch, {"masked": model}, meta)
    fixed = {"step_percent": 10, "threshold": "fixed", "tol": 0.01, "max_iterations": 10, "batch_size": 1,
             "score": "mean_error"}
    cfg = experiment_settings("itermask3d", infer=fixed, model_from=True)
    out = tmp_path / "sub-02"
    infer("m.pt", {"lesion": c1}, cfg, out)
    res = json.loads((out / "lesion" / "result.json").read_text())
    assert res["tau"] == 1.0 and res["threshold"] == "fixed" and len(res["curve"]) == 10
    assert res["fixed_tau_source"].startswith("calibration: 80th percentile") and res["subject_tau"] is not None
    assert res["score_name"] == "mean_error" and res["score"] == res["scores"]["mean_error"]
    mask = nib.load(str(out / "lesion" / "mask.nii.gz")).get_fdata() > 0
    assert dice(mask, a1.numpy()) > 0.95
    # without phase A: the same fixed tau and mask, no curve
    cfg_b = experiment_settings("itermask3d", infer={**fixed, "fixed_phase_a": False}, model_from=True)
    infer("m.pt", {"lesion": c1}, cfg_b, tmp_path / "sub-09")
    res_b = json.loads((tmp_path / "sub-09" / "lesion" / "result.json").read_text())
    assert res_b["tau"] == 1.0 and res_b["iterations_a"] == 0 and res_b["curve"] == [] and res_b["subject_tau"] is None
    np.testing.assert_array_equal(nib.load(str(tmp_path / "sub-09" / "lesion" / "mask.nii.gz")).get_fdata() > 0, mask)
    # no_freq experiment with a full model is refused; wrong grid is refused
    with pytest.raises(InputError, match="no_freq"):
        infer("m.pt", {"lesion": c1}, experiment_settings("itermask3d", "no_freq", infer=fixed, model_from=True), out)
    bad = dict(c1)
    bad["brain"] = str(tmp_path / "bad.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((S, S, S), np.uint8), np.eye(4)), bad["brain"])
    with pytest.raises(InputError, match="affine"):
        infer("m.pt", {"lesion": bad}, cfg, tmp_path / "sub-03")
    assert not (tmp_path / "sub-03").exists()


class TinyConv2d(nn.Module):
    def __init__(self, cin: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(cin, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, x):
        return self.net(x)


def test_slicewise_2d_on_volume_and_2d_slices(tmp_path, monkeypatch):
    x, hf, brain, h, anomaly = cube_subject(10, (8, 8, 8), (14, 14, 14))
    vol = torch.where(brain, x, torch.tensor(-3.0)).numpy()
    brain_np = brain.numpy().copy()
    brain_np[:, :, :4] = False  # a few axial slices without brain
    d = tmp_path / "in"
    d.mkdir()
    cond3d = {"image": _write(d / "image.nii.gz", vol), "hf": _write(d / "hf.nii.gz", hf.numpy()),
              "brain": _write(d / "brain.nii.gz", brain_np.astype(np.uint8)), "label": None}
    n2 = 3
    g = torch.Generator().manual_seed(3)
    img2 = torch.randn((n2, 16, 16), generator=g).numpy()
    br2 = np.zeros((n2, 16, 16), bool)
    br2[:, 3:13, 3:13] = True
    np.savez(d / "slices.npz", image=img2, hf=img2 * 0.5, brain=br2, label=np.zeros_like(br2),
             index=np.array([10, 11, 12]), role=np.array("test"))
    models = {"first": TinyConv2d(1, 0), "masked": TinyConv2d(2, 1)}
    meta = {"method": "itermask2", "variant": "full", "hf_radius": 3, "spatial_dims": 2,
            "network": {"image_size": 16}, "calibration": {"tau": 0.05, "percentile": 80.0}}
    _fake_loader(monkeypatch, models, meta)
    cfg = experiment_settings("itermask2", infer={"first_step_percentile": 40, "tol": 0.01, "max_iterations": 5,
                                                  "batch_size": 8, "score": "mask_size"}, hf_radius=3)
    out = tmp_path / "sub-04"
    infer("m.pt", {"healthy": cond3d, "lesion": {"slices": str(d / "slices.npz")}}, cfg, out)
    res = json.loads((out / "healthy" / "result.json").read_text())
    z_brain = np.flatnonzero(brain_np.any(axis=(0, 1)))
    assert res["kind"] == "slicewise" and res["slices"] == z_brain.tolist() and res["tau"] == 0.05
    for f in ("recon", "error", "mask", "brainmask", "input2d"):
        img = nib.load(str(out / "healthy" / f"{f}.nii.gz"))
        assert img.shape == (S, S, S)
        np.testing.assert_allclose(img.affine, AFFINE)
    mask = nib.load(str(out / "healthy" / "mask.nii.gz")).get_fdata() > 0
    error = nib.load(str(out / "healthy" / "error.nii.gz")).get_fdata()
    assert not mask[~brain_np].any() and not error[~brain_np].any() and error[brain_np].max() > 0
    assert not mask[:, :, :4].any()
    res2 = json.loads((out / "lesion" / "result.json").read_text())
    assert res2["kind"] == "2d" and res2["slices"] == [10, 11, 12] and len(res2["per_slice_scores"]) == 3
    assert "oracle" not in res2  # the slices carry no lesion label: no oracle
    for f in ("recon", "error", "mask", "brainmask", "label"):
        assert nib.load(str(out / "lesion" / f"{f}.nii.gz")).shape == (16, 16, n2)
    # re-threshold of a 2D condition at the calibration tau reproduces the mask
    p = rethreshold("m.pt", str(out / "lesion"), 0.05, device="cpu")
    np.testing.assert_array_equal(nib.load(str(p)).get_fdata(), nib.load(str(out / "lesion" / "mask.nii.gz")).get_fdata())


def test_infer_subject_with_saved_networks(tmp_path):
    """Real model files (written by save_models, read through the method), no fakes: end to end."""
    from itermask.core.networks import save_models
    from itermask.methods import get

    n = S
    x, hf, brain, h, anomaly = cube_subject(11, (9, 9, 9), (14, 14, 14))
    sl = (slice(0, S),) * 3
    d = tmp_path / "in"
    d.mkdir()
    cond = {"image": _write(d / "image.nii.gz", x[sl].numpy()), "hf": _write(d / "hf.nii.gz", x[sl].numpy() * 0.1),
            "brain": _write(d / "brain.nii.gz", brain[sl].numpy().astype(np.uint8)), "label": None}
    s3 = experiment_settings("itermask3d", "no_spatial", network={"channels": [2, 4, 4, 8, 8]}, hf_radius=3,
                             infer={"step_percent": 25, "max_iterations": 10, "batch_size": 1})
    im3 = get("itermask3d")
    meta3 = {"method": "itermask3d", "variant": "full", "hf_radius": 3, "spatial_dims": 3,
             "calibration": {"tau": 0.2, "percentile": 80.0}, **im3.build_networks(s3, (n, n, n))}
    torch.manual_seed(0)
    save_models(tmp_path / "m3.pt", im3.networks_from_meta(meta3), meta3)
    infer(str(tmp_path / "m3.pt"), {"healthy": cond}, s3, tmp_path / "o3")
    res = json.loads((tmp_path / "o3" / "healthy" / "result.json").read_text())
    # -spatial: one reconstruction, thresholded at the calibration tau (no phase A, no iterations)
    assert res["iterations_a"] == 0 and res["iterations_b"] == 1 and res["variant"] == "no_spatial"
    assert res["threshold"] == "single_step" and res["tau"] == 0.2 and res["curve"] == []
    assert nib.load(str(tmp_path / "o3" / "healthy" / "recon.nii.gz")).shape == (n, n, n)

    s2 = experiment_settings("itermask2", network={"channels": [4, 4, 8, 8, 8], "attention_res": [8],
                                                   "num_res_blocks": 1},
                             infer={"max_iterations": 3, "score": "mean_error"}, hf_radius=3)
    im2 = get("itermask2")
    meta2 = {"method": "itermask2", "variant": "full", "hf_radius": 3, "spatial_dims": 2,
             "calibration": {"tau": 0.1, "percentile": 80.0}, **im2.build_networks(s2, (16, 16))}
    save_models(tmp_path / "m2.pt", im2.networks_from_meta(meta2), meta2)
    infer(str(tmp_path / "m2.pt"), {"healthy": cond}, s2, tmp_path / "o2")
    res = json.loads((tmp_path / "o2" / "healthy" / "result.json").read_text())
    assert res["kind"] == "slicewise" and res["tau"] == 0.1 and res["score_name"] == "mean_error"
    assert nib.load(str(tmp_path / "o2" / "healthy" / "error.nii.gz")).shape == (n, n, n)
    # an experiment whose HF radius is not the model's is refused
    with pytest.raises(InputError, match="HF radius 3"):
        infer(str(tmp_path / "m2.pt"), {"healthy": cond}, experiment_settings("itermask2", hf_radius=6),
              tmp_path / "o4")


# ----------------------------------------------------------------------------------------
# tau percentile without retraining, HF recomputed at the model's radius
# ----------------------------------------------------------------------------------------
def test_itermask2_tau_picks_the_stored_quantile():
    pct = list(range(1, 100))
    meta = {"calibration": {"tau": 0.8, "percentile": 80.0, "quantile_percentiles": pct,
                            "quantiles": [p / 100 for p in pct]}}
    assert calibration_tau(meta, None) == (0.8, 80.0)
    assert calibration_tau(meta, 80) == (0.8, 80.0)
    assert calibration_tau(meta, 60) == (pytest.approx(0.60), 60.0)
    assert calibration_tau(meta, 95.0)[0] == pytest.approx(0.95)
    assert calibration_tau(meta, 1)[0] == pytest.approx(0.01)
    with pytest.raises(ConfigError, match="integer percentiles 1..99"):
        calibration_tau(meta, 62.5)
    old = {"calibration": {"tau": 0.8, "percentile": 80.0}}  # a model from before the quantiles
    assert calibration_tau(old, 80)[0] == 0.8
    with pytest.raises(InputError, match="no per-percentile quantiles"):
        calibration_tau(old, 60)
    with pytest.raises(InputError, match="no calibration tau"):
        calibration_tau({}, None)


class Recorder(nn.Module):
    """Wraps a network and keeps its inputs."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.inputs = net, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.net(x)


def test_2d_slices_at_another_tau_percentile(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(5)
    img = torch.randn((3, 16, 16), generator=g).numpy()
    brain = np.zeros((3, 16, 16), bool)
    brain[:, 2:14, 3:13] = True
    path = tmp_path / "slices.npz"
    np.savez(path, image=img, hf=img * 0.5, brain=brain, label=np.zeros_like(brain), index=np.array([4, 5, 6]),
             role=np.array("test"))
    models = {"first": Recorder(TinyConv2d(1, 0)), "masked": Recorder(TinyConv2d(2, 1))}
    pct = list(range(1, 100))
    meta = {"method": "itermask2", "variant": "full", "hf_radius": 4, "spatial_dims": 2,
            "network": {"image_size": 16},
            "calibration": {"tau": 0.8, "percentile": 80.0, "quantile_percentiles": pct,
                            "quantiles": [p / 1000 for p in pct]}}
    _fake_loader(monkeypatch, models, meta)
    cfg = experiment_settings("itermask2", infer={"first_step_percentile": 40, "tol": 0.01, "max_iterations": 5,
                                                  "batch_size": 8, "tau_percentile": 70}, hf_radius=4)
    out = tmp_path / "sub-05"
    infer("m.pt", {"lesion": {"slices": str(path)}}, cfg, out)
    res = json.loads((out / "lesion" / "result.json").read_text())
    assert res["tau"] == pytest.approx(0.070) and res["tau_percentile"] == 70.0 and res["hf_radius"] == 4
    # the first-iteration model's input is the stored HF image of the slices file, as it is
    first = torch.cat(models["first"].inputs)[:, 0].numpy()
    np.testing.assert_allclose(first, img * 0.5, rtol=1e-6)
    # re-threshold at the same tau reproduces the mask
    p = rethreshold("m.pt", str(out / "lesion"), res["tau"], device="cpu")
    np.testing.assert_array_equal(nib.load(str(p)).get_fdata(), nib.load(str(out / "lesion" / "mask.nii.gz")).get_fdata())


def test_condition_seeds_come_from_keys_not_from_output_paths(tmp_path, monkeypatch):
    """The same (seed, dataset, subject, condition) gives the same noise wherever the output
    goes; another dataset with the same subject ID, another subject or condition, other noise."""
    seed = inference.condition_seed
    assert seed(0, "ds", "01", "lesion") == seed(0, "ds", "01", "lesion")
    others = {seed(0, "other", "01", "lesion"), seed(0, "ds", "02", "lesion"), seed(0, "ds", "01", "healthy"),
              seed(1, "ds", "01", "lesion"), seed(0, "ds", "01", "lesion", 7)}
    assert seed(0, "ds", "01", "lesion") not in others and len(others) == 5
    # pinned: must stay stable across processes (no hash salt), since re-runs and resumed jobs rely on them
    assert seed(0, "ds", "01", "lesion") == 4816739262993441309
    assert seed(0, "ds", "01", "lesion", 7) == 6949250213530556122
    assert seed(1, "ds", "01", "lesion") == 3399822302066710681
    c1, e1, _ = _subject_files(tmp_path, 12, (9, 9, 9), (16, 16, 16))
    _fake_loader(monkeypatch, {"masked": Oracle([e1], inpaint_rule)}, {"method": "itermask3d", "variant": "full",
                                                                         "hf_radius": 15})
    cfg = experiment_settings("itermask3d", infer={"step_percent": 10, "max_iterations": 3})
    for folder in ("a/sub-01", "b/elsewhere"):
        inference.infer_subject("m.pt", {"lesion": c1}, cfg, str(tmp_path / folder), dataset="ds", subject="01",
                                device="cpu", amp=False, channels_last=True, field_of_view_mm=FOV, log=lambda m: None)
    ra, rb = (json.loads((tmp_path / f / "lesion" / "result.json").read_text()) for f in ("a/sub-01", "b/elsewhere"))
    assert ra["seed"] == rb["seed"] == seed(0, "ds", "01", "lesion")
    assert (tmp_path / "a/sub-01/lesion/mask.nii.gz").read_bytes() == (tmp_path / "b/elsewhere/lesion/mask.nii.gz").read_bytes()
    # the record too, byte for byte: nothing time- or place-dependent in it
    assert (tmp_path / "a/sub-01/lesion/result.json").read_bytes() == (tmp_path / "b/elsewhere/lesion/result.json").read_bytes()


def test_2d_outputs_carry_the_pixel_spacing_and_left_out_subjects_have_a_record(tmp_path, monkeypatch):
    """Issue 10: 2D NIfTI outputs have the slices file's affine (1.875 mm pixels here), and a
    test subject with no lesion in the central range gets result.json with left_out_reason."""
    g = torch.Generator().manual_seed(6)
    img = torch.randn((2, 16, 16), generator=g).numpy()
    brain = np.zeros((2, 16, 16), bool)
    brain[:, 2:14, 3:13] = True
    aff = np.diag([1.875, 1.875, 1.0, 1.0])
    label = np.zeros_like(brain)
    label[:, 5:9, 5:9] = True
    np.savez(tmp_path / "a.npz", image=img, hf=img * 0.5, brain=brain, label=label,
             index=np.array([70, 75]), role=np.array("test"), affine=aff)
    np.savez(tmp_path / "b.npz", image=np.zeros((0, 16, 16)), hf=np.zeros((0, 16, 16)), brain=np.zeros((0, 16, 16), bool),
             label=np.zeros((0, 16, 16), bool), index=np.zeros(0, int), role=np.array("test"), affine=aff,
             left_out_reason=np.array("no lesion in the central axial range 70-89 of 155 slices used for training"))
    models = {"first": TinyConv2d(1, 0), "masked": TinyConv2d(2, 1)}
    meta = {"method": "itermask2", "variant": "full", "hf_radius": 3, "network": {"image_size": 16},
            "calibration": {"tau": 0.05, "percentile": 80.0}}
    _fake_loader(monkeypatch, models, meta)
    cfg = experiment_settings("itermask2", infer={"max_iterations": 3}, hf_radius=3)
    infer("m.pt", {"lesion": {"slices": str(tmp_path / "a.npz")}}, cfg, tmp_path / "sub-a")
    for f in ("recon", "error", "mask", "brainmask", "label", "mask_oracle"):
        np.testing.assert_allclose(nib.load(str(tmp_path / "sub-a" / "lesion" / f"{f}.nii.gz")).affine, aff)
    oracle = json.loads((tmp_path / "sub-a" / "lesion" / "result.json").read_text())["oracle"]
    assert oracle["uses_test_labels"] is True and len(oracle["per_slice"]) == 2
    assert oracle["first_step_percentiles"] == [10, 20, 30, 40, 50, 60] and oracle["tau_factors"][0] == 0.5  # schema grid
    infer("m.pt", {"lesion": {"slices": str(tmp_path / "b.npz")}}, cfg, tmp_path / "sub-b")
    res = json.loads((tmp_path / "sub-b" / "lesion" / "result.json").read_text())
    assert res["left_out_reason"].startswith("no lesion in the central axial range") and res["slices"] == []
    assert "score" not in res and not list((tmp_path / "sub-b" / "lesion").glob("*.nii.gz"))


def test_infer_runs_several_subjects_match_one_at_a_time(tmp_path):
    """A multi-subject job (resources.infer_subjects_per_job) writes each subject's folder as a
    one-subject job does: seeds are keyed by (dataset, subject, condition), not by the job."""
    from itermask.core.networks import save_models
    from itermask.methods import get

    conds = []
    for k, (lo, hi) in enumerate((((9, 9, 9), (14, 14, 14)), ((4, 6, 8), (10, 9, 12)))):
        x, hf, brain, h, anomaly = cube_subject(20 + k, lo, hi)
        d = tmp_path / f"in{k}"
        d.mkdir()
        conds.append({"image": _write(d / "image.nii.gz", x.numpy()), "hf": _write(d / "hf.nii.gz", hf.numpy()),
                      "brain": _write(d / "brain.nii.gz", brain.numpy().astype(np.uint8)),
                      "label": _write(d / "label.nii.gz", anomaly.numpy().astype(np.uint8))})
    s3 = experiment_settings("itermask3d", network={"channels": [2, 4, 4, 8, 8]}, hf_radius=3,
                             infer={"step_percent": 25, "max_iterations": 4, "batch_size": 4,
                                    "oracle_tau_factors": [1.0, 2.0]})
    im3 = get("itermask3d")
    meta = {"method": "itermask3d", "variant": "full", "hf_radius": 3, "spatial_dims": 3,
            **im3.build_networks(s3, (S, S, S))}
    torch.manual_seed(0)
    save_models(tmp_path / "m.pt", im3.networks_from_meta(meta), meta)
    # s1's labelled scan is a validation one (val_lesion): same inputs, no per-image-best oracle
    runs = [inference.Run("ds", f"s{k}", {("lesion", "val_lesion")[k]: c, "healthy": {**c, "label": None}},
                          str(tmp_path / "joint" / f"sub-s{k}")) for k, c in enumerate(conds)]
    inference.infer_runs(str(tmp_path / "m.pt"), runs, s3, device="cpu", amp=False, channels_last=True,
                         field_of_view_mm=FOV, log=lambda m: None)
    for k, run in enumerate(runs):
        inference.infer_subject(str(tmp_path / "m.pt"), run.conditions, s3, str(tmp_path / "alone" / f"sub-s{k}"),
                                dataset="ds", subject=f"s{k}", device="cpu", amp=False, channels_last=True,
                                field_of_view_mm=FOV, log=lambda m: None)
        for cond in run.conditions:
            joint, alone = (tmp_path / w / f"sub-s{k}" / cond for w in ("joint", "alone"))
            rj, ra = (json.loads((p / "result.json").read_text()) for p in (joint, alone))
            assert rj["subject"] == f"s{k}" and rj["condition"] == cond
            for p in (joint, alone):
                assert (p / "mask_oracle.nii.gz").exists() == (cond == "lesion"), p
            assert rj["seed"] == ra["seed"] and rj["tau"] == pytest.approx(ra["tau"], rel=1e-5)
            np.testing.assert_allclose(nib.load(str(joint / "error.nii.gz")).get_fdata(),
                                       nib.load(str(alone / "error.nii.gz")).get_fdata(), rtol=1e-4, atol=1e-6)
    assert {p.name for p in (tmp_path / "joint").iterdir()} == {"sub-s0", "sub-s1"}


def test_channels_last_inference_matches_the_default_layout_and_rethreshold_replays_it(tmp_path, monkeypatch):
    """resources.channels_last: a real 3D model run channels-last gives the default layout's
    errors and tau to rounding; result.json records the layout and a re-threshold loads the model
    in it (a record without the key, from before it was recorded, ran contiguous)."""
    from itermask.core.networks import save_models
    from itermask.methods import get

    x, hf, brain, h, anomaly = cube_subject(31, (9, 9, 9), (14, 14, 14))
    cond = {"image": _write(tmp_path / "image.nii.gz", x.numpy()), "hf": _write(tmp_path / "hf.nii.gz", hf.numpy()),
            "brain": _write(tmp_path / "brain.nii.gz", brain.numpy().astype(np.uint8)),
            "label": _write(tmp_path / "label.nii.gz", anomaly.numpy().astype(np.uint8))}
    s3 = experiment_settings("itermask3d", network={"channels": [2, 4, 4, 8, 8]}, hf_radius=3,
                             infer={"step_percent": 25, "max_iterations": 4})
    im3 = get("itermask3d")
    meta = {"method": "itermask3d", "variant": "full", "hf_radius": 3, "spatial_dims": 3,
            **im3.build_networks(s3, (S, S, S))}
    torch.manual_seed(0)
    save_models(tmp_path / "m.pt", im3.networks_from_meta(meta), meta)
    res = {}
    for cl in (False, True):
        out = tmp_path / f"cl{int(cl)}" / "sub-01"
        inference.infer_subject(str(tmp_path / "m.pt"), {"lesion": cond}, s3, str(out), dataset="ds", subject="01",
                                device="cpu", amp=False, channels_last=cl, field_of_view_mm=FOV, log=lambda m: None)
        res[cl] = json.loads((out / "lesion" / "result.json").read_text())
        assert res[cl]["channels_last"] is cl
    assert res[True]["tau"] == pytest.approx(res[False]["tau"], rel=1e-5)
    errors = [nib.load(str(tmp_path / f"cl{k}" / "sub-01" / "lesion" / "error.nii.gz")).get_fdata() for k in (0, 1)]
    np.testing.assert_allclose(errors[1], errors[0], rtol=1e-4, atol=1e-6)
    layouts = []
    method = get("itermask3d")
    real = method.rethreshold

    def spy(networks, prev, tau, ctx):
        layouts.append(networks["masked"].encoder[0].conv[0].conv.weight.is_contiguous(
            memory_format=torch.channels_last_3d))
        return real(networks, prev, tau, ctx)

    monkeypatch.setattr(method, "rethreshold", spy)
    lesion = tmp_path / "cl1" / "sub-01" / "lesion"
    rethreshold(str(tmp_path / "m.pt"), str(lesion), 0.5, device="cpu")
    assert layouts == [True]
    record = json.loads((lesion / "result.json").read_text())
    del record["channels_last"]
    (lesion / "result.json").write_text(json.dumps(record))
    rethreshold(str(tmp_path / "m.pt"), str(lesion), 0.5, device="cpu")
    assert layouts == [True, False]


def test_phase_b_start_reaches_the_run_and_is_recorded(tmp_path, monkeypatch):
    """infer.phase_b_start tau_mask: phase B starts from phase A's mask at k* (subject tau; on this
    subject that mask is already phase B's fixed point: one step, no change), result.json and the
    method's description say so; from the whole brain (``brain``, or any fixed tau) phase B takes
    a second step after its first mask changes most of the brain."""
    from itermask.methods.itermask3d import METHOD

    c1, e1, _ = _subject_files(tmp_path, 7, (9, 9, 9), (16, 16, 16))
    _fake_loader(monkeypatch, {"masked": Oracle([e1], inpaint_rule)},
                 {"method": "itermask3d", "variant": "full", "hf_radius": 15, "spatial_dims": 3,
                  "calibration": {"tau": 1.0, "percentile": 80, "quantile_percentiles": [80], "quantiles": [1.0]}})
    runs = (("subject", "tau_mask", "tau_mask", "phase B from phase A's mask at k*", 1),
            ("subject", "brain", "brain", "phase B from the whole brain", 2),
            ("fixed", "tau_mask", "brain", "phase B from the whole brain", 2))
    for threshold, start, recorded, text, steps in runs:
        cfg = experiment_settings("itermask3d", infer={"step_percent": 5, "max_iterations": 10, "batch_size": 1,
                                                       "threshold": threshold, "phase_b_start": start})
        out = tmp_path / f"{threshold}-{start}" / "sub-01"
        infer("model.pt", {"lesion": c1}, cfg, out)
        res = json.loads((out / "lesion" / "result.json").read_text())
        assert res["phase_b_start"] == recorded and res["threshold"] == threshold
        assert text in METHOD.describe(cfg)
        assert res["iterations_b"] == steps and res["phase_b_changes"][-1] == 0.0, (threshold, start)
        assert (res["phase_b_changes"][0] > 0.5) == (steps == 2), res["phase_b_changes"]


def test_curve_scale_percent_reaches_the_rule_and_is_recorded(tmp_path, monkeypatch):
    """infer.curve_scale_percent: the subject tau comes from the curve divided by its value at that
    percent (the fit records the divisor), result.json and the method's description say so."""
    from itermask.core.threshold import subject_threshold
    from itermask.methods.itermask3d import METHOD

    c1, e1, _ = _subject_files(tmp_path, 7, (9, 9, 9), (16, 16, 16))
    _fake_loader(monkeypatch, {"masked": Oracle([e1], inpaint_rule)},
                 {"method": "itermask3d", "variant": "full", "hf_radius": 15, "spatial_dims": 3})
    cfg = experiment_settings("itermask3d", infer={"step_percent": 5, "max_iterations": 10, "batch_size": 1,
                                                   "gamma": 0.5, "y_limit": 40.0, "curve_scale_percent": 50})
    infer("model.pt", {"lesion": c1}, cfg, tmp_path / "sub-01")
    res = json.loads((tmp_path / "sub-01" / "lesion" / "result.json").read_text())
    curve, t = np.asarray(res["curve"]), np.asarray(res["percents"])
    assert res["curve_scale_percent"] == 50 and res["fit"]["scale"] == pytest.approx(curve[t == 50][0])
    rule = {"gamma": 0.5, "y_limit": 40.0, "r2_min": cfg.infer["r2_min"], "no_exceed": cfg.infer["k_fallback"],
            "scale_at": None, "t": t}
    expected = subject_threshold(curve / curve[t == 50][0], **rule)
    assert res["k_star"] == expected.k and res["tau"] == pytest.approx(curve[expected.k])
    assert subject_threshold(curve, **rule).k != expected.k  # the scale matters here
    assert "the curve divided by its value at 50 %" in METHOD.describe(cfg)
