"""itermask.preprocess.preprocess_subject.preprocess_subject: the whole per-subject job (rule
preprocess_subject__<dataset>) on real small NIfTI files, against its stage functions."""
from __future__ import annotations

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
from itermask.preprocess.preprocess_subject import PreprocessParams, RawFiles, SubjectOutputs, preprocess_subject
from test_bad_input_files import IDS, assert_error, good_image, write_bad
from test_preprocess import synthetic_subject

SEQUENCES = ("T1w", "FLAIR")
PARAMS = PreprocessParams(mask_method="stripped", mask_sequence="T1w", spacing_mm=3.0, box=[32, 32, 32],
                          zscore_repeats=3, zscore_clip_sd=3.0, background="min", hf_radius=5)


def outputs(folder: Path, sequences=SEQUENCES) -> SubjectOutputs:
    """The rule's output files in `folder` (names as rules/common.smk spells them)."""
    return SubjectOutputs(
        checked=str(folder / "inputs_checked.json"), native_mask=str(folder / "native_brainmask.nii.gz"),
        grid=str(folder / "brainmask.nii.gz"), qc=str(folder / "skullstrip.png"),
        images={q: str(folder / f"{q}.nii.gz") for q in sequences},
        hf={q: str(folder / f"{q}_hf-r5.nii.gz") for q in sequences},
    )


def written(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_one_job_writes_what_the_three_stages_wrote(tmp_path):
    paths, _, _ = synthetic_subject(tmp_path)
    raw = RawFiles(images={q: str(paths[q]) for q in SEQUENCES}, label=str(paths["label"]), mask=None)
    out = outputs(tmp_path / "job")
    preprocess_subject(raw, out, PARAMS, **IDS)
    assert written(tmp_path / "job") == sorted(
        ["inputs_checked.json", "native_brainmask.nii.gz", "brainmask.nii.gz", "skullstrip.png",
         "T1w.nii.gz", "FLAIR.nii.gz", "T1w_hf-r5.nii.gz", "FLAIR_hf-r5.nii.gz"])
    report = json.loads(Path(out.checked).read_text())
    assert set(report["images"]) == set(SEQUENCES) and report["label"]["values"] == [0, 2]
    # the stages one by one, as the separate rules ran them: the same arrays
    ref = tmp_path / "stages"
    make_brain_mask(paths["T1w"], ref / "native.nii.gz", method="stripped", mask_path=None, device="cpu", **IDS)
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
        np.testing.assert_allclose(hf, high_frequency(z, 5), atol=1e-5)
    assert not list((tmp_path / "job").glob(".*.tmp*"))  # written atomically: no temporaries left


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


def test_voxel_problems_fail_the_stage_that_reads_them(tmp_path):
    """NaN voxels pass the header check and fail the brain mask, naming the file."""
    bad = write_bad(tmp_path, "nan")
    raw = RawFiles(images={"T1w": str(bad)}, label=None, mask=None)
    with pytest.raises(InputError) as exc:
        preprocess_subject(raw, outputs(tmp_path / "job", ("T1w",)), PARAMS, **IDS)
    assert_error(exc, bad, "NaN/Inf")
    assert written(tmp_path / "job") == ["inputs_checked.json"]  # Snakemake removes a failed job's outputs


def test_outputs_must_name_every_sequence(tmp_path):
    raw = RawFiles(images={"T1w": "t1.nii.gz", "FLAIR": "flair.nii.gz"}, label=None, mask=None)
    with pytest.raises(ValueError, match="sequences differ"):
        preprocess_subject(raw, outputs(tmp_path, ("T1w",)), PARAMS, **IDS)
