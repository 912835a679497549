"""Failed skull-stripping set (itermask.artefacts.failed_skullstrip): template-registration mask vs deepbet."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from itermask.demo import demo_data as demo
from itermask.demo.anatomy import load_anatomy
from itermask.demo.subject import synthesize_subject
from itermask.artefacts import failed_skullstrip as stripcompare
from itermask.errors import InputError
from itermask.io.nifti import load_nifti, save_nifti
from itermask.preprocess.skullstrip import deepbet_mask
from itermask.artefacts.failed_skullstrip import (
    build_failed_skullstrip_set,
    head_top_slab,
    mask_agreement,
    rank_subjects,
    template_brain_mask,
    template_mask_from_tissue,
)

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
    root = tmp_path_factory.mktemp("stripcompare")
    pattern = str(root / "data/sub-{subject}/anat/sub-{subject}_{sequence}.nii.gz")
    label = str(root / "data/sub-{subject}/anat/sub-{subject}_label.nii.gz")
    demo.generate_demo(pattern, label, {"train": ["s1"]}, ["T1w"], voxel_size_mm=VOXEL_MM, seed=0)
    path = pattern.format(subject="s1", sequence="T1w")
    raw = nib.load(path)
    img = load_nifti(path)  # RAS, as rule brain_mask sees it
    sub = synthesize_subject(load_anatomy(VOXEL_MM), "s1", ["T1w"], voxel_size_mm=VOXEL_MM, seed=0)
    assert np.array_equal(np.asanyarray(raw.dataobj), sub.images["T1w"])  # the same subject
    truth = nib.as_closest_canonical(nib.Nifti1Image(sub.brain_mask.astype(np.uint8), raw.affine))
    truth = np.asanyarray(truth.dataobj) > 0
    bet = deepbet_mask(img, device="cpu")
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


def test_mask_agreement_known_overlap():
    a = np.zeros((20, 20, 20), bool)
    b = np.zeros_like(a)
    a[0:10, 0:10, 0:10] = True           # 1000 voxels
    b[5:15, 0:10, 0:10] = True           # 1000 voxels, 500 shared
    out = mask_agreement(a, b, voxel_ml=0.008)
    assert out["dice"] == pytest.approx(0.5)
    assert out["volume_a_ml"] == pytest.approx(8.0) and out["volume_b_ml"] == pytest.approx(8.0)
    assert out["volume_ratio"] == pytest.approx(1.0)
    b[:] = False
    b[0:10, 0:10, 0:5] = True             # half of a, inside it
    out = mask_agreement(a, b, voxel_ml=1e-3)
    assert out["dice"] == pytest.approx(2 * 500 / 1500)
    assert out["volume_ratio"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mask_agreement(np.zeros((3, 3, 3), bool), np.zeros((3, 3, 3), bool), voxel_ml=1e-3)


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


def test_rank_subjects_orders_and_flags():
    ranked = rank_subjects({"a": 0.9, "b": 0.5, "c": 0.95, "d": 0.5}, 2)
    assert ranked == [("b", True), ("d", True), ("a", False), ("c", False)]
    assert all(f for _, f in rank_subjects({"a": 0.9}, 5))


def test_template_mask_agrees_with_generator_and_deepbet(heads, template_s1):
    _, h = heads
    s1 = h["s1"]
    assert template_s1.shape == s1["img"].shape and template_s1.dtype == bool
    assert _dice(template_s1, s1["truth"]) > 0.8
    assert _dice(template_s1, s1["deepbet"]) > 0.8
    assert _dice(s1["deepbet"], s1["truth"]) > 0.8  # deepbet itself is a good reference here


def test_broken_mask_ranks_lowest_and_is_flagged(heads, template_s1, tmp_path, monkeypatch):
    _, h = heads
    s1 = h["s1"]
    # three subjects with the head of s1: "good" with its deepbet mask, "true" with the
    # generator's brain, "bad" with the true brain shifted by 5 voxels (20 mm) upwards, a
    # failed strip; the (identical) registration is memoised
    monkeypatch.setattr(stripcompare, "template_brain_mask", _template_once)
    bad = np.roll(s1["truth"], 5, axis=2)
    bad_path = tmp_path / "bad_native_brainmask.nii.gz"
    save_nifti(bad, s1["img"].affine, bad_path, dtype=np.uint8)
    images = {"good": s1["image"], "bad": s1["image"], "true": s1["image"]}
    masks = {"good": s1["deepbet_path"], "bad": bad_path, "true": s1["truth_path"]}
    out = tmp_path / "qc" / "demo_failed_skullstrip.tsv"
    build_failed_skullstrip_set(images, masks, out, n_subjects=1, dataset="demo", spacing_mm=SPACING_MM)
    header, *table = [line.split("\t") for line in out.read_text().splitlines()]
    assert header == ["subject", "dice", "deepbet_ml", "template_ml", "flagged"]
    assert table[0][0] == "bad" and [r[4] for r in table] == ["True", "False", "False"]
    dice = [float(r[1]) for r in table]
    assert dice == sorted(dice) and dice[0] < 0.8 < dice[1]
    rows = {r[0]: r for r in table}
    # the numbers are those of the masks themselves
    voxel_ml = VOXEL_MM ** 3 / 1000
    assert float(rows["good"][1]) == pytest.approx(_dice(s1["deepbet"], template_s1), abs=1e-4)
    assert float(rows["bad"][1]) == pytest.approx(_dice(bad, template_s1), abs=1e-4)
    assert float(rows["good"][2]) == pytest.approx(s1["deepbet"].sum() * voxel_ml, abs=0.06)
    assert float(rows["bad"][2]) == pytest.approx(bad.sum() * voxel_ml, abs=0.06)
    assert float(rows["good"][3]) == float(rows["bad"][3]) == pytest.approx(template_s1.sum() * voxel_ml, abs=0.06)
    assert float(rows["true"][1]) == pytest.approx(_dice(s1["truth"], template_s1), abs=1e-4)
    assert not list(out.parent.glob(".*tmp*"))


def test_unreadable_and_mismatched_inputs_name_subject_and_file(heads, tmp_path):
    _, h = heads
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    with pytest.raises(InputError) as err:
        build_failed_skullstrip_set({"s1": broken}, {"s1": h["s1"]["deepbet_path"]}, tmp_path / "o.tsv",
                                    n_subjects=1, dataset="demo")
    assert err.value.subject == "s1" and err.value.dataset == "demo" and err.value.path == str(broken)
    small = tmp_path / "small.nii.gz"
    save_nifti(np.ones((4, 4, 4), np.uint8), np.eye(4), small)
    with pytest.raises(InputError) as err:
        build_failed_skullstrip_set({"s1": h["s1"]["image"]}, {"s1": small}, tmp_path / "o.tsv",
                                    n_subjects=1, dataset="demo")
    assert err.value.path == str(small) and "shape" in str(err.value)
    assert not (tmp_path / "o.tsv").exists()


def test_dry_run_lists_rule_when_enabled(tmp_path):
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["datasets"]["tiny"]["failed_skullstrip_set"] = {"enabled": True, "n_subjects": 2}
    path = tmp_path / "tiny_fss.yaml"
    path.write_text(yaml.safe_dump(cfg))
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    res = subprocess.run(
        [str(bin_dir / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile", str(path),
         "-n", "--cores", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr + res.stdout
    assert "rule failed_skullstrip:" in res.stdout
    assert f"{cfg['results_dir']}/qc/tiny_failed_skullstrip.tsv" in res.stdout
    n_subjects = sum(len(v) for v in cfg["datasets"]["tiny"]["splits"].values())
    inputs = res.stdout.split("rule failed_skullstrip:")[1].split("input:")[1].splitlines()[0]
    assert inputs.count("native_brainmask.nii.gz") == n_subjects
    assert inputs.count("_T1w.nii.gz") == n_subjects  # the stripped sequence (brain_mask.sequence)
