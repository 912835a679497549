"""Template-registration brain masks (itermask.artefacts.template_mask), one tool of the failed-strip set."""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from itermask.demo import demo_data as demo
from itermask.demo.anatomy import load_anatomy
from itermask.demo.subject import synthesize_subject
from itermask.io.nifti import load_nifti, save_nifti
from itermask.preprocess.skullstrip import deepbet_mask
import itermask.preprocess.resample as resample
from itermask.artefacts.template_mask import head_top_slab, template_brain_mask, template_mask_from_tissue

ROOT = Path(__file__).resolve().parents[2]
VOXEL_MM = 4.0
SPACING_MM = 4.0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """A demo head (raw file), its generator's brain mask and deepbet's (RAS grid, saved)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("template_mask")
    pattern = str(root / "data/sub-{subject}/anat/sub-{subject}_{sequence}.nii.gz")
    label = str(root / "data/sub-{subject}/anat/sub-{subject}_label.nii.gz")
    path = pattern.format(subject="s1", sequence="T1w")
    demo.generate_demo({"train": ["s1"]}, {"s1": {"T1w": path}}, {}, str(root / "data/participants.tsv"),
                       voxel_size_mm=VOXEL_MM, lesion_volumes_ml=[8.0], seed=0)
    raw = nib.load(path)
    img = load_nifti(path)  # RAS, as rule brain_mask sees it
    sub = synthesize_subject(load_anatomy(VOXEL_MM), "s1", ["T1w"], voxel_size_mm=VOXEL_MM, seed=0)
    assert np.array_equal(np.asanyarray(raw.dataobj), sub.images["T1w"])  # the same subject
    truth = nib.as_closest_canonical(nib.Nifti1Image(sub.brain_mask.astype(np.uint8), raw.affine))
    truth = np.asanyarray(truth.dataobj) > 0
    bet = deepbet_mask(img, device="cpu", amp=True)
    torch.set_num_threads(n)
    s1 = dict(image=path, img=img, truth=truth, deepbet=bet,
              truth_path=root / "s1_truth.nii.gz", deepbet_path=root / "s1_native_brainmask.nii.gz")
    save_nifti(truth, img.affine, s1["truth_path"], dtype=np.uint8)
    save_nifti(bet, img.affine, s1["deepbet_path"], dtype=np.uint8)
    return root, {"s1": s1}


_REGISTERED: dict[bytes, np.ndarray] = {}


def _template_once(img: nib.Nifti1Image, *, spacing_mm: float) -> np.ndarray:
    """template_brain_mask, memoised on the image (the registration is the slow part)."""
    key = np.asarray(img.dataobj).tobytes() + np.asarray(img.affine).tobytes() + str(spacing_mm).encode()
    if key not in _REGISTERED:
        _REGISTERED[key] = template_brain_mask(img, spacing_mm=spacing_mm)
    return _REGISTERED[key]


@pytest.fixture(scope="module")
def template_s1(heads):
    return _template_once(heads[1]["s1"]["img"], spacing_mm=SPACING_MM)


def test_template_mask_from_tissue_fills_ventricle_and_respects_threshold():
    grid = np.indices((31, 31, 31)) - 15
    r = np.sqrt((grid ** 2).sum(0))
    gm = np.where((r <= 12) & (r > 9), 0.8, 0.0)
    wm = np.where((r <= 9) & (r > 4), 0.9, 0.0)       # r <= 4: "ventricle", no GM/WM
    gm[r > 12] = 0.2                                   # below the 0.3 threshold
    mask = template_mask_from_tissue(gm, wm)
    np.testing.assert_array_equal(mask, r <= 12)


def test_head_top_slab_follows_world_superior_axis():
    mask = np.zeros((6, 6, 14), bool)
    mask[1:5, 1:5, 2:12] = True
    up = np.diag([2.0, 2.0, 2.0, 1.0])
    up[:3, 3] = (-5.0, 3.0, -40.0)                   # z = 2 k - 40: top slice k = 11
    expected = mask.copy()
    expected[..., :7] = False                        # z > 22 - 40 - 10  <=>  k >= 7
    np.testing.assert_array_equal(head_top_slab(mask, up, 10.0), expected)
    down = up.copy()
    down[2, 2] = -2.0                                # z = -2 k - 40: top slice k = 2
    expected = mask.copy()
    expected[..., 7:] = False                        # -2 k > -4 - 10  <=>  k <= 6
    np.testing.assert_array_equal(head_top_slab(mask, down, 10.0), expected)


def test_template_mask_agrees_with_generator_and_deepbet(heads, template_s1):
    _, h = heads
    s1 = h["s1"]
    assert template_s1.shape == s1["img"].shape and template_s1.dtype == bool
    assert _dice(template_s1, s1["truth"]) > 0.8
    assert _dice(template_s1, s1["deepbet"]) > 0.8
    assert _dice(s1["deepbet"], s1["truth"]) > 0.8  # deepbet itself is a good reference here


def test_template_mask_pins_itk_to_one_thread_before_antspyx_runs(monkeypatch):
    """ITK reads its thread count when it first runs: the registration sets it to 1 before its first antspyx call."""
    monkeypatch.setenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "8")  # as rule_context sets it (the job's threads)
    seen = []

    def first_ants_call(*args, **kwargs):
        seen.append(os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"])
        raise RuntimeError("stop")

    monkeypatch.setattr(resample, "resample_to_spacing", first_ants_call)
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    with pytest.raises(RuntimeError, match="stop"):
        template_brain_mask(img, spacing_mm=4.0)
    assert seen == ["1"]
