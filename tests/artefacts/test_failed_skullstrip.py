"""The failed-skull-stripping set (itermask.artefacts.failed_skullstrip): agreement, outlier, selection."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from itermask.artefacts import failed_skullstrip as fs
from itermask.artefacts.failed_skullstrip import (
    build_failed_skullstrip_set, make_subject_masks, mask_agreement, select_subjects, selected_subjects,
    subject_agreement,
)
from itermask.errors import InputError
from itermask.io.nifti import save_nifti

RAS_SHAPE = (24, 20, 22)  # the head fixture's raw image (20, 22, 24), reoriented to RAS


def _cube(lo: int, hi: int, shape=(20, 20, 20)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[lo:hi, 0:10, 0:10] = True
    return m


def test_mask_agreement_known_overlap():
    a, b = _cube(0, 10), _cube(5, 15)    # 1000 voxels each, 500 shared
    out = mask_agreement(a, b, voxel_ml=0.008)
    assert out["dice"] == pytest.approx(0.5)
    assert out["volume_a_ml"] == pytest.approx(8.0) and out["volume_ratio"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mask_agreement(np.zeros((3, 3, 3), bool), np.zeros((3, 3, 3), bool), voxel_ml=1e-3)


def test_subject_agreement_known_answer():
    # deepbet and hd_bet agree exactly; the template mask is shifted by half: Dice 0.5 with each
    masks = {"deepbet": _cube(0, 10), "hd_bet": _cube(0, 10), "template": _cube(5, 15)}
    out = subject_agreement(masks, voxel_ml=0.008)
    assert out["dice"] == pytest.approx({"deepbet|hd_bet": 1.0, "deepbet|template": 0.5, "hd_bet|template": 0.5})
    assert out["mean_agreement"] == pytest.approx(2 / 3)
    assert out["tool_agreement"] == pytest.approx({"deepbet": 0.75, "hd_bet": 0.75, "template": 0.5})
    assert out["outlier"] == "template"
    assert out["volume_ml"]["template"] == pytest.approx(8.0)
    # the outlier is the tool that disagrees, whichever it is
    masks = {"deepbet": _cube(5, 15), "hd_bet": _cube(0, 10), "template": _cube(1, 10)}
    assert subject_agreement(masks, voxel_ml=1.0)["outlier"] == "deepbet"
    with pytest.raises(ValueError, match="three"):
        subject_agreement({"a": _cube(0, 10), "b": _cube(0, 10)}, voxel_ml=1.0)


def test_select_subjects_lowest_agreement_first():
    ranked = select_subjects({"a": 0.9, "b": 0.5, "c": 0.95, "d": 0.5}, 2)
    assert ranked == [("b", True), ("d", True), ("a", False), ("c", False)]
    assert all(f for _, f in select_subjects({"a": 0.9}, 5))
    with pytest.raises(ValueError):
        select_subjects({"a": 0.9}, 0)


@pytest.fixture
def head(tmp_path):
    """A raw image in a non-RAS orientation and deepbet's mask on its RAS grid (as rule brain_mask writes it)."""
    data = np.zeros((20, 22, 24), np.float32)
    data[2:18, 2:18, 2:18] = 1.0
    flip = np.array([[0, 0, -2.0, 0], [2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1]])  # not RAS (axes permuted, flipped)
    image = tmp_path / "raw.nii.gz"
    nib.save(nib.Nifti1Image(data, flip), str(image))
    deepbet = tmp_path / "native_brainmask.nii.gz"
    save_nifti(_cube(0, 10, RAS_SHAPE), nib.as_closest_canonical(nib.Nifti1Image(data, flip)).affine, deepbet, dtype=np.uint8)
    return image, deepbet


def _run(tmp_path, image, deepbet, subject="s1"):
    outs = {t: tmp_path / f"{subject}_mask-{t}.nii.gz" for t in ("hd_bet", "template")}
    make_subject_masks(image, deepbet, outs, tmp_path / f"{subject}_outlier.nii.gz", tmp_path / f"{subject}.json",
                       dataset="demo", subject=subject, device="cpu", hd_bet_mode="fast", hd_bet_tta=False,
                       template_spacing_mm=3.0)
    return outs


def test_make_subject_masks_writes_tools_agreement_and_outlier(tmp_path, head, monkeypatch):
    import itermask.artefacts.template_mask as tm
    import itermask.preprocess.hd_bet as hb

    seen = {}

    def fake_hd_bet(img, *, device, mode, tta):
        seen.update(device=device, mode=mode, tta=tta, shape=img.shape, ras=nib.aff2axcodes(img.affine))
        return _cube(1, 10, RAS_SHAPE)

    monkeypatch.setattr(hb, "hd_bet_mask", fake_hd_bet)
    monkeypatch.setattr(tm, "template_brain_mask", lambda img, *, spacing_mm: _cube(5, 15, RAS_SHAPE))
    image, deepbet = head
    outs = _run(tmp_path, image, deepbet)
    assert seen == {"device": "cpu", "mode": "fast", "tta": False, "shape": RAS_SHAPE, "ras": ("R", "A", "S")}
    record = json.loads((tmp_path / "s1.json").read_text())
    assert record["outlier"] == "template" and record["subject"] == "s1" and record["dataset"] == "demo"
    assert record["dice"]["deepbet|hd_bet"] == pytest.approx(2 * 900 / 1900)
    np.testing.assert_array_equal(np.asarray(nib.load(str(outs["hd_bet"])).dataobj) > 0, _cube(1, 10, RAS_SHAPE))
    # the outlying mask is written on the raw image's on-disk grid (a mask file of that image)
    outlier, raw = nib.load(str(tmp_path / "s1_outlier.nii.gz")), nib.load(str(image))
    assert outlier.shape == raw.shape and np.allclose(outlier.affine, raw.affine)
    ras = nib.as_closest_canonical(outlier)
    np.testing.assert_array_equal(np.asarray(ras.dataobj) > 0, _cube(5, 15, RAS_SHAPE))


def test_make_subject_masks_names_subject_when_a_tool_fails(tmp_path, head, monkeypatch):
    import itermask.artefacts.template_mask as tm
    import itermask.preprocess.hd_bet as hb

    monkeypatch.setattr(hb, "hd_bet_mask", lambda img, **kw: _cube(0, 10, RAS_SHAPE))

    def fail(img, *, spacing_mm):
        raise RuntimeError("antsRegistration exit status 1")

    monkeypatch.setattr(tm, "template_brain_mask", fail)
    image, deepbet = head
    with pytest.raises(InputError) as err:
        _run(tmp_path, image, deepbet, subject="s7")
    assert err.value.subject == "s7" and err.value.dataset == "demo" and "template" in str(err.value)
    assert not (tmp_path / "s7.json").exists() and not (tmp_path / "s7_outlier.nii.gz").exists()


def _record(path, subject, mean, outlier="template"):
    dice = {"deepbet|hd_bet": 0.9, "deepbet|template": mean, "hd_bet|template": mean}
    path.write_text(json.dumps({"subject": subject, "dice": dice, "mean_agreement": mean, "outlier": outlier,
                                "volume_ml": {"deepbet": 1200.0, "hd_bet": 1190.0, "template": 900.0}}))
    return path


def test_build_set_selects_lowest_mean_agreement(tmp_path):
    recs = {s: _record(tmp_path / f"{s}.json", s, m) for s, m in (("a", 0.95), ("b", 0.6), ("c", 0.8))}
    out = tmp_path / "qc" / "demo_failed_skullstrip.tsv"
    build_failed_skullstrip_set(recs, out, n_subjects=2, dataset="demo")
    header, *rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert header == list(fs.COLUMNS)
    assert header[:4] == ["subject", "dice_deepbet_hd_bet", "dice_deepbet_template", "dice_hd_bet_template"]
    assert [r[0] for r in rows] == ["b", "c", "a"]
    assert [r[header.index("selected")] for r in rows] == ["yes", "yes", "no"]
    assert rows[0][header.index("mean_agreement")] == "0.6000" and rows[0][header.index("outlier")] == "template"
    assert selected_subjects(str(out)) == ["b", "c"]
    build_failed_skullstrip_set(recs, out, n_subjects=20, dataset="demo")  # fewer candidates: all selected
    assert selected_subjects(str(out)) == ["b", "c", "a"]


def test_build_set_and_selection_errors(tmp_path):
    broken = tmp_path / "x.json"
    broken.write_text("{not json")
    with pytest.raises(InputError) as err:
        build_failed_skullstrip_set({"x": broken}, tmp_path / "o.tsv", n_subjects=1, dataset="demo")
    assert err.value.subject == "x" and err.value.path == str(broken)
    with pytest.raises(InputError):
        build_failed_skullstrip_set({}, tmp_path / "o.tsv", n_subjects=1, dataset="demo")
    missing = str(tmp_path / "none.tsv")
    with pytest.raises(FileNotFoundError) as nf:  # Snakemake reads this as "not built yet"
        selected_subjects(missing)
    assert nf.value.filename == missing
