"""itermask.preprocess.preprocess_subject.preprocess_subject: the whole per-subject job (rules
preprocess_subject__<dataset>, preprocess_labelled__<dataset>) on real small NIfTI files,
against its stage functions; preprocess_subjects (rules preprocess__<dataset>__<chunk>) against it."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from itermask.core.highfreq import high_frequency
from itermask.errors import InputError
import itermask.preprocess.preprocess_subject as stage
from itermask.preprocess.brain_mask import make_brain_mask, resample_mask
from itermask.preprocess.normalise import resample_and_normalise
from itermask.preprocess.preprocess_subject import (
    PreprocessParams, RawFiles, SliceParams, SubjectJob, SubjectOutputs, outputs_from_named, preprocess_subject,
    preprocess_subjects,
)
from itermask.preprocess.qc import qc_subject
from itermask.preprocess.resample_label import resample_label
from itermask.preprocess.slices2d import extract_slices2d
from test_bad_input_files import IDS, assert_error, good_image, write_bad
from test_preprocess import synthetic_subject

SEQUENCES = ("T1w", "FLAIR")
PARAMS = PreprocessParams(mask_method="stripped", mask_sequence="T1w", spacing_mm=3.0, box=[32, 32, 32],
                          zscore_repeats=3, zscore_clip_sd=3.0, background="min", hf_radius=5,
                          device="cpu", amp=True)
SLICES = dict(size=16, field_of_view_mm=120.0, train_range_fraction=(0.3, 0.7), hf_radius=3)


def outputs(folder: Path, sequences=SEQUENCES, labelled=False, slices=()) -> SubjectOutputs:
    """The rule's output files in `folder` (names as rules/common.smk spells them)."""
    return SubjectOutputs(
        checked=str(folder / "inputs_checked.json"), native_mask=str(folder / "native_brainmask.nii.gz"),
        grid=str(folder / "brainmask.nii.gz"), qc=str(folder / "skullstrip.png"),
        images={q: str(folder / f"{q}.nii.gz") for q in sequences},
        hf={q: str(folder / f"{q}_hf-r5.nii.gz") for q in sequences},
        qc_png=str(folder / "qc.png"), qc_json=str(folder / "qc.json"),
        label=str(folder / "label.nii.gz") if labelled else None,
        slices={q: str(folder / f"{q}_slices2d-r3.npz") for q in slices},
    )


def with_slices(role: str) -> PreprocessParams:
    return dataclasses.replace(PARAMS, slices=SliceParams(role=role, **SLICES))


def written(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_one_job_writes_what_the_separate_stages_wrote(tmp_path):
    """A labelled subject with FLAIR slices: check, masks, images, label, slices and QC."""
    paths, _, _ = synthetic_subject(tmp_path)
    raw = RawFiles(images={q: str(paths[q]) for q in SEQUENCES}, label=str(paths["label"]), mask=None)
    out = outputs(tmp_path / "job", labelled=True, slices=("FLAIR",))
    preprocess_subject(raw, out, with_slices("test"), **IDS)
    assert written(tmp_path / "job") == sorted(
        ["inputs_checked.json", "native_brainmask.nii.gz", "brainmask.nii.gz", "skullstrip.png",
         "T1w.nii.gz", "FLAIR.nii.gz", "T1w_hf-r5.nii.gz", "FLAIR_hf-r5.nii.gz", "label.nii.gz",
         "FLAIR_slices2d-r3.npz", "qc.png", "qc.json"])
    report = json.loads(Path(out.checked).read_text())
    assert set(report["images"]) == set(SEQUENCES) and report["label"]["values"] == [0, 2]
    # the stages one by one, as the separate rules ran them: the same arrays
    ref = tmp_path / "stages"
    make_brain_mask(paths["T1w"], ref / "native.nii.gz", method="stripped", mask_path=None, device="cpu", amp=True, **IDS)
    resample_mask(ref / "native.nii.gz", ref / "grid.nii.gz", spacing_mm=3.0, box=[32, 32, 32], **IDS)
    grid = nib.load(out.grid)
    assert grid.shape == (32, 32, 32)
    np.testing.assert_array_equal(grid.get_fdata(), nib.load(ref / "grid.nii.gz").get_fdata())
    for q in SEQUENCES:
        resample_and_normalise(paths[q], ref / "grid.nii.gz", ref / f"{q}.nii.gz", ref / f"{q}_hf.nii.gz", repeats=3,
                               clip_sd=3.0, background="min", hf_radius=5, **IDS)
        z = nib.load(out.images[q]).get_fdata(dtype=np.float32)
        np.testing.assert_array_equal(z, nib.load(ref / f"{q}.nii.gz").get_fdata(dtype=np.float32))
        np.testing.assert_allclose(nib.load(out.images[q]).affine, grid.affine)
        hf = nib.load(out.hf[q]).get_fdata(dtype=np.float32)
        np.testing.assert_allclose(hf, high_frequency(z, radius=5), atol=1e-5)
    resample_label(paths["label"], paths["T1w"], ref / "grid.nii.gz", ref / "label.nii.gz", **IDS)
    label = nib.load(out.label).get_fdata()
    assert label.any()
    np.testing.assert_array_equal(label, nib.load(ref / "label.nii.gz").get_fdata())
    extract_slices2d(ref / "FLAIR.nii.gz", ref / "grid.nii.gz", ref / "slices.npz", label_path=ref / "label.nii.gz",
                     role="test", train_range_fraction=(0.3, 0.7), log=print,
                     **{k: v for k, v in SLICES.items() if k != "train_range_fraction"}, **IDS)
    with np.load(out.slices["FLAIR"]) as job, np.load(ref / "slices.npz") as stage_ref:
        assert str(job["role"]) == "test" and job["image"].shape == (1, 16, 16) and job["label"].any()
        for key in stage_ref.files:
            np.testing.assert_array_equal(job[key], stage_ref[key])
    qc_subject({q: ref / f"{q}.nii.gz" for q in SEQUENCES}, ref / "grid.nii.gz", ref / "qc.png", ref / "qc.json",
               label_path=ref / "label.nii.gz", **IDS)
    record = json.loads(Path(out.qc_json).read_text())
    assert record == json.loads((ref / "qc.json").read_text()) and record["lesion_volume_ml"] > 0
    assert not list((tmp_path / "job").glob(".*.tmp*"))  # written atomically: no temporaries left


def test_a_subject_without_label_or_slices_writes_neither(tmp_path):
    paths, _, _ = synthetic_subject(tmp_path)
    raw = RawFiles(images={q: str(paths[q]) for q in SEQUENCES}, label=None, mask=None)
    preprocess_subject(raw, outputs(tmp_path / "job"), PARAMS, **IDS)
    assert written(tmp_path / "job") == sorted(
        ["inputs_checked.json", "native_brainmask.nii.gz", "brainmask.nii.gz", "skullstrip.png",
         "T1w.nii.gz", "FLAIR.nii.gz", "T1w_hf-r5.nii.gz", "FLAIR_hf-r5.nii.gz", "qc.png", "qc.json"])
    assert "lesion_volume_ml" not in json.loads((tmp_path / "job" / "qc.json").read_text())


@pytest.mark.parametrize("role", ["train", "all"])
def test_slices_take_the_subjects_role(tmp_path, role):
    paths, _, _ = synthetic_subject(tmp_path)
    raw = RawFiles(images={q: str(paths[q]) for q in SEQUENCES}, label=None, mask=None)
    out = outputs(tmp_path / "job", slices=SEQUENCES)
    preprocess_subject(raw, out, with_slices(role), **IDS)
    grid = nib.load(out.grid).get_fdata() > 0
    for q in SEQUENCES:
        with np.load(out.slices[q]) as npz:
            assert str(npz["role"]) == role and not npz["label"].any()
            brain_slices = np.flatnonzero(grid.any(axis=(0, 1)))
            if role == "all":
                np.testing.assert_array_equal(npz["index"], brain_slices)
            else:
                assert 0 < len(npz["index"]) < len(brain_slices) and set(npz["index"]) <= set(range(10, 22))


def test_an_empty_label_fails_naming_the_file(tmp_path):
    """The stages after the images fail the job as the earlier ones do: dataset, subject, file
    (a labelled subject without a lesion stops at the label's resampling, before any slice)."""
    paths, _, _ = synthetic_subject(tmp_path)
    empty = tmp_path / "raw" / "empty_label.nii.gz"
    source = nib.load(paths["label"])
    nib.save(nib.Nifti1Image(np.zeros(source.shape, np.uint8), source.affine), empty)
    raw = RawFiles(images={q: str(paths[q]) for q in SEQUENCES}, label=str(empty), mask=None)
    out = outputs(tmp_path / "job", labelled=True, slices=("FLAIR",))
    with pytest.raises(InputError) as exc:
        preprocess_subject(raw, out, with_slices("test"), **IDS)
    assert_error(exc, empty, "label has no lesion voxel")
    assert "FLAIR_slices2d-r3.npz" not in written(tmp_path / "job")


@pytest.mark.parametrize("kind, problem", [("random_bytes", "cannot read NIfTI header"),
                                           ("four_d", "expected a 3D image")])
def test_a_bad_file_fails_the_check_before_any_heavy_stage(tmp_path, monkeypatch, kind, problem):
    def heavy(*args, **kwargs):
        raise AssertionError("a heavy stage ran before the input check failed")

    monkeypatch.setattr(stage, "make_brain_mask", heavy)
    monkeypatch.setattr(stage, "resample_and_normalise", heavy)
    bad = write_bad(tmp_path, kind)
    raw = RawFiles(images={"T1w": str(good_image(tmp_path / "t1.nii.gz")), "FLAIR": str(bad)}, label=None, mask=None)
    with pytest.raises(InputError) as exc:
        preprocess_subject(raw, outputs(tmp_path / "job"), PARAMS, **IDS)
    assert_error(exc, bad, problem)
    assert written(tmp_path / "job") == []


def test_a_missing_sequence_is_the_checks_error(tmp_path):
    missing = tmp_path / "flair.nii.gz"
    raw = RawFiles(images={"T1w": str(good_image(tmp_path / "t1.nii.gz")), "FLAIR": str(missing)}, label=None, mask=None)
    with pytest.raises(InputError) as exc:
        preprocess_subject(raw, outputs(tmp_path / "job"), PARAMS, **IDS)
    assert_error(exc, missing, "sequence 'FLAIR' image file does not exist")


def test_voxel_problems_fail_the_input_check(tmp_path):
    """NaN voxels in a sequence other than the mask's fail the input check, before the brain
    mask: nothing is written and the error names the sequence and the file."""
    good = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), good)
    bad = write_bad(tmp_path, "nan")
    raw = RawFiles(images={"T1w": str(good), "FLAIR": str(bad)}, label=None, mask=None)
    with pytest.raises(InputError) as exc:
        preprocess_subject(raw, outputs(tmp_path / "job"), PARAMS, **IDS)
    assert_error(exc, bad, "sequence 'FLAIR' image: image contains 1 NaN/Inf voxels")
    assert written(tmp_path / "job") == []


def test_outputs_must_fit_the_raw_files_and_settings(tmp_path):
    raw = RawFiles(images={"T1w": "t1.nii.gz", "FLAIR": "flair.nii.gz"}, label=None, mask=None)
    with pytest.raises(ValueError, match="sequences differ"):
        preprocess_subject(raw, outputs(tmp_path, ("T1w",)), PARAMS, **IDS)
    with pytest.raises(ValueError, match="a label output needs a label file"):
        preprocess_subject(raw, outputs(tmp_path, labelled=True), PARAMS, **IDS)
    with pytest.raises(ValueError, match="a label output needs a label file"):
        preprocess_subject(dataclasses.replace(raw, label="label.nii.gz"), outputs(tmp_path), PARAMS, **IDS)
    with pytest.raises(ValueError, match=r"slices of sequences \['T2w'\]"):
        preprocess_subject(raw, outputs(tmp_path, slices=("T2w",)), with_slices("all"), **IDS)
    with pytest.raises(ValueError, match="slice outputs without slice settings"):
        preprocess_subject(raw, outputs(tmp_path, slices=("FLAIR",)), PARAMS, **IDS)
    assert written(tmp_path) == []


def _two_subjects(tmp_path: Path, folder: str) -> list[SubjectJob]:
    """A labelled subject with FLAIR test slices and an unlabelled one with training slices of
    both sequences (raw files shared by the calls: the same inputs each time)."""
    paths, _, _ = synthetic_subject(tmp_path)
    images = {q: str(paths[q]) for q in SEQUENCES}
    return [SubjectJob("a1", RawFiles(images=images, label=str(paths["label"]), mask=None),
                       outputs(tmp_path / folder / "a1", labelled=True, slices=("FLAIR",)), with_slices("test")),
            SubjectJob("b2", RawFiles(images=images, label=None, mask=None),
                       outputs(tmp_path / folder / "b2", slices=SEQUENCES), with_slices("train"))]


def test_a_multi_subject_job_writes_each_subjects_files_byte_for_byte(tmp_path):
    """preprocess_subjects = preprocess_subject per subject, file by file."""
    jobs = _two_subjects(tmp_path, "chunk")
    preprocess_subjects(jobs, dataset="dsX")
    for j in _two_subjects(tmp_path, "single"):
        preprocess_subject(j.raw, j.out, j.params, dataset="dsX", subject=j.subject)
    for subject in ("a1", "b2"):
        names = written(tmp_path / "chunk" / subject)
        assert names == written(tmp_path / "single" / subject) and len(names) >= 12
        for name in names:
            ours, theirs = tmp_path / "chunk" / subject / name, tmp_path / "single" / subject / name
            assert ours.read_bytes() == theirs.read_bytes(), (subject, name)


def test_a_bad_file_of_any_subject_fails_the_job_before_any_heavy_stage(tmp_path, monkeypatch):
    """Every subject's input check runs first: a bad file of the second subject fails the job,
    naming it, before the first subject's skull-stripping."""
    def heavy(*args, **kwargs):
        raise AssertionError("a heavy stage ran before the input checks")

    monkeypatch.setattr(stage, "make_brain_mask", heavy)
    good = good_image(tmp_path / "t1.nii.gz")
    bad = write_bad(tmp_path, "random_bytes")
    jobs = [SubjectJob("001", RawFiles(images={"T1w": str(good), "FLAIR": str(good)}, label=None, mask=None),
                       outputs(tmp_path / "001"), PARAMS),
            SubjectJob(IDS["subject"], RawFiles(images={"T1w": str(good), "FLAIR": str(bad)}, label=None, mask=None),
                       outputs(tmp_path / "007"), PARAMS)]
    with pytest.raises(InputError) as exc:
        preprocess_subjects(jobs, dataset=IDS["dataset"])
    assert_error(exc, bad, "cannot read NIfTI header")
    assert written(tmp_path / "001") == ["inputs_checked.json"] and written(tmp_path / "007") == []
    with pytest.raises(ValueError, match="a subject twice in one job"):
        preprocess_subjects([jobs[0], jobs[0]], dataset=IDS["dataset"])


def test_outputs_from_a_rules_named_outputs(tmp_path):
    """The rules' output names (rules/inputs/preprocess.smk) map onto SubjectOutputs."""
    out = outputs(tmp_path, labelled=True, slices=("FLAIR",))
    named = {"checked": out.checked, "mask": out.native_mask, "grid": out.grid, "qc": out.qc, "qc_png": out.qc_png,
             "qc_json": out.qc_json, "label": out.label, "slices_FLAIR": out.slices["FLAIR"],
             **{f"image_{q}": out.images[q] for q in SEQUENCES}, **{f"hf_{q}": out.hf[q] for q in SEQUENCES}}
    assert outputs_from_named(named, SEQUENCES) == out
    del named["label"], named["slices_FLAIR"]
    assert outputs_from_named(named, SEQUENCES) == outputs(tmp_path)
