"""Failed skull-stripping set (itermask.stripcompare): template-registration mask vs deepbet."""
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

from itermask import demo
from itermask.errors import InputError
from itermask.nifti import load_nifti, save_nifti
from itermask.skullstrip import deepbet_mask
from itermask.stripcompare import (
    build_failed_skullstrip_set,
    head_top_slab,
    mask_agreement,
    rank_subjects,
    template_brain_mask,
    template_mask_from_tissue,
)

ROOT = Path(__file__).resolve().parents[1]
VOXEL_MM = 4.0
SPACING_MM = 4.0
SUBJECTS = ("s1", "s2")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """Two demo heads (raw files) with the generator's brain masks (RAS grid), deepbet's for s1."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("stripcompare")
    pattern = str(root / "data/sub-{subject}/anat/sub-{subject}_{sequence}.nii.gz")
    label = str(root / "data/sub-{subject}/anat/sub-{subject}_label.nii.gz")
    demo.generate_demo(pattern, label, {"train": list(SUBJECTS)}, ["T1w"], voxel_size_mm=VOXEL_MM, seed=0)
    anatomy = demo.load_anatomy(VOXEL_MM)
    out = {}
    for s in SUBJECTS:
        path = pattern.format(subject=s, sequence="T1w")
        img = load_nifti(path)  # RAS, as rule brain_mask sees it
        sub = demo.synthesize_subject(anatomy, s, ["T1w"], voxel_size_mm=VOXEL_MM, seed=0)
        raw = nib.load(path)
        assert np.array_equal(np.asanyarray(raw.dataobj), sub.images["T1w"])  # the same subject
        truth = np.asanyarray(nib.as_closest_canonical(nib.Nifti1Image(sub.brain_mask.astype(np.uint8), raw.affine)).dataobj) > 0
        out[s] = dict(image=path, img=img, truth=truth)
    bet = deepbet_mask(out["s1"]["img"], device="cpu")  # s2's mask is made broken in the test
    out["s1"].update(deepbet=bet, deepbet_path=root / "s1_native_brainmask.nii.gz")
    save_nifti(bet, out["s1"]["img"].affine, out["s1"]["deepbet_path"], dtype=np.uint8)
    torch.set_num_threads(n)
    return root, out


@pytest.fixture(scope="module")
def template_s1(heads):
    return template_brain_mask(heads[1]["s1"]["img"], spacing_mm=SPACING_MM)


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


def test_broken_mask_ranks_lowest_and_is_flagged(heads, template_s1, tmp_path):
    root, h = heads
    # s2's mask: its true brain shifted by 5 voxels (20 mm) upwards, a failed strip
    bad = np.roll(h["s2"]["truth"], 5, axis=2)
    bad_path = tmp_path / "s2_broken.nii.gz"
    save_nifti(bad, h["s2"]["img"].affine, bad_path, dtype=np.uint8)
    images = {s: h[s]["image"] for s in SUBJECTS}
    masks = {"s1": h["s1"]["deepbet_path"], "s2": bad_path}
    out = tmp_path / "qc" / "demo_failed_skullstrip.tsv"
    build_failed_skullstrip_set(images, masks, out, n_subjects=1, dataset="demo", spacing_mm=SPACING_MM)
    lines = out.read_text().splitlines()
    assert lines[0].split("\t") == ["subject", "dice", "deepbet_ml", "template_ml", "flagged"]
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[0] for r in rows] == ["s2", "s1"]
    assert [r[4] for r in rows] == ["True", "False"]
    dice = [float(r[1]) for r in rows]
    assert dice == sorted(dice) and dice[0] < 0.8 < dice[1]
    # s1's row reproduces an independent computation (the same registration: bit for bit on
    # one ITK thread, within float-summation noise on several)
    voxel_ml = VOXEL_MM ** 3 / 1000
    assert dice[1] == pytest.approx(_dice(h["s1"]["deepbet"], template_s1), abs=0.01)
    assert float(rows[1][2]) == pytest.approx(h["s1"]["deepbet"].sum() * voxel_ml, abs=0.1)
    assert float(rows[1][3]) == pytest.approx(template_s1.sum() * voxel_ml, rel=0.02)
    assert float(rows[0][2]) == pytest.approx(bad.sum() * voxel_ml, abs=0.1)
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
    assert "rule failed_skullstrip_set:" in res.stdout
    assert f"{cfg['results_dir']}/qc/tiny_failed_skullstrip.tsv" in res.stdout
    n_subjects = sum(len(v) for v in cfg["datasets"]["tiny"]["splits"].values())
    inputs = res.stdout.split("rule failed_skullstrip_set:")[1].split("input:")[1].splitlines()[0]
    assert inputs.count("native_brainmask.nii.gz") == n_subjects
    assert inputs.count("_T1w.nii.gz") == n_subjects  # the stripped sequence (brain_mask.sequence)
