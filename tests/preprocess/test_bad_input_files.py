"""Bad input files: a clear InputError naming dataset, subject and file, and no output left."""
from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from types import SimpleNamespace

from itermask.preprocess import brain_mask, normalise, qc, resample_label, slices2d
from itermask.errors import InputError

pp = SimpleNamespace(  # the stage functions, each in the module named after its stage
    make_brain_mask=brain_mask.make_brain_mask, resample_mask=brain_mask.resample_mask,
    qc_skullstrip=brain_mask.qc_skullstrip, resample_label=resample_label.resample_label,
    resample_and_normalise=normalise.resample_and_normalise, extract_slices2d=slices2d.extract_slices2d,
    qc_subject=qc.qc_subject, qc_table=qc.qc_table,
)

IDS = dict(dataset="dsX", subject="007")
AFF = np.diag([2.0, 2.0, 2.0, 1.0])


def good_image(path: Path, shape=(8, 9, 10), affine=AFF) -> Path:
    data = np.random.default_rng(0).random(shape).astype(np.float32) + 1
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def grid(tmp_path: Path) -> Path:
    path = tmp_path / "grid.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 6, 6), np.uint8), AFF), path)
    return path


def assert_error(exc: pytest.ExceptionInfo, bad: Path, problem: str) -> None:
    msg = str(exc.value)
    assert str(bad) in msg and "dsX" in msg and "007" in msg, msg
    assert problem in msg, msg
    assert exc.value.path == str(bad)


def assert_nothing_written(out_dir: Path) -> None:
    assert not out_dir.exists() or not any(out_dir.iterdir()), list(out_dir.iterdir())


def write_bad(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "in" / f"{kind}.nii.gz"
    path.parent.mkdir(exist_ok=True)
    if kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif kind == "truncated_gzip":
        good_image(path, shape=(30, 30, 30))
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "four_d":
        nib.save(nib.Nifti1Image(np.ones((6, 6, 6, 3), np.float32), AFF), path)
    elif kind in ("nan", "inf"):
        data = np.ones((6, 6, 6), np.float32)
        data[1, 2, 3] = np.nan if kind == "nan" else np.inf
        nib.save(nib.Nifti1Image(data, AFF), path)
    elif kind == "all_zero":
        nib.save(nib.Nifti1Image(np.zeros((6, 6, 6), np.float32), AFF), path)
    else:
        raise AssertionError(kind)
    return path


BAD = [
    ("random_bytes", "cannot read"),
    ("truncated_gzip", "cannot read"),
    ("four_d", "expected a 3D image"),
    ("nan", "NaN/Inf"),
    ("inf", "NaN/Inf"),
    ("all_zero", "empty"),
]


@pytest.mark.parametrize("kind, problem", BAD)
def test_bad_image_for_brain_mask(tmp_path, kind, problem):
    bad = write_bad(tmp_path, kind)
    out = tmp_path / "out"
    with pytest.raises(InputError) as exc:
        pp.make_brain_mask(bad, out / "native_brainmask.nii.gz", method="stripped", mask_path=None, device="cpu", amp=True, **IDS)
    assert_error(exc, bad, problem)
    assert_nothing_written(out)


@pytest.mark.parametrize("kind, problem", BAD)
def test_bad_image_for_resampling(tmp_path, kind, problem):
    bad = write_bad(tmp_path, kind)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError) as exc:  # stage normalise: resampling + normalisation in one step
        pp.resample_and_normalise(bad, grid(tmp_path), out / "T1w.nii.gz", out / "T1w_hf-r15.nii.gz", repeats=3,
                                  clip_sd=3.0, background="min", hf_radius=15, **IDS)
    assert_error(exc, bad, problem)
    assert_nothing_written(out)


def test_truncated_gzip_is_really_truncated(tmp_path):
    bad = write_bad(tmp_path, "truncated_gzip")
    with pytest.raises((EOFError, OSError)):
        gzip.decompress(bad.read_bytes())


@pytest.mark.parametrize("what, problem", [("shape", "shape (8, 9, 11) differs"), ("affine", "affine differs")])
def test_label_grid_differs_from_image(tmp_path, what, problem):
    image = good_image(tmp_path / "img.nii.gz")
    label_path = tmp_path / "label.nii.gz"
    if what == "shape":
        lab = nib.Nifti1Image(np.ones((8, 9, 11), np.uint8), AFF)
    else:
        shifted = AFF.copy()
        shifted[:3, 3] = [0.0, 4.0, 0.0]
        lab = nib.Nifti1Image(np.ones((8, 9, 10), np.uint8), shifted)
    nib.save(lab, label_path)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError) as exc:
        pp.resample_label(label_path, image, grid(tmp_path), out / "label.nii.gz", **IDS)
    assert_error(exc, label_path, problem)
    assert_nothing_written(out)


def test_missing_label_file(tmp_path):
    image = good_image(tmp_path / "img.nii.gz")
    missing = tmp_path / "nope_label.nii.gz"
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError) as exc:
        pp.resample_label(missing, image, grid(tmp_path), out / "label.nii.gz", **IDS)
    assert_error(exc, missing, "label file missing")
    assert_nothing_written(out)


def test_empty_label_for_test_slice(tmp_path):
    img = tmp_path / "img.nii.gz"
    brain = np.zeros((8, 8, 8), np.uint8)
    brain[2:6, 2:6, 2:6] = 1
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 8)).astype(np.float32), AFF), img)
    nib.save(nib.Nifti1Image(brain, AFF), tmp_path / "brain.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), AFF), tmp_path / "label.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError) as exc:
        pp.extract_slices2d(img, tmp_path / "brain.nii.gz", out / "s.npz", label_path=tmp_path / "label.nii.gz",
                            role="test", size=8, train_range_fraction=(0.45, 0.58), hf_radius=15,
                            field_of_view_mm=8.0, log=print, **IDS)
    assert_error(exc, tmp_path / "label.nii.gz", "label is empty")
    assert_nothing_written(out)


def test_pattern_mask_missing(tmp_path):
    image = good_image(tmp_path / "img.nii.gz")
    missing = tmp_path / "mask_missing.nii.gz"
    out = tmp_path / "out"
    with pytest.raises(InputError) as exc:
        pp.make_brain_mask(image, out / "m.nii.gz", method="pattern", mask_path=missing, device="cpu", amp=True, **IDS)
    assert_error(exc, missing, "does not exist")
    assert_nothing_written(out)


def test_failure_after_writing_starts_leaves_no_temp_file(tmp_path, monkeypatch):
    # an error raised while the output is being written leaves neither output nor temp file
    image = good_image(tmp_path / "img.nii.gz")
    out = tmp_path / "out"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        pp.make_brain_mask(image, out / "m.nii.gz", method="stripped", mask_path=None, device="cpu", amp=True, **IDS)
    assert_nothing_written(out)


# -- input check (first stage of preprocess_subject): header-level checks before any heavy stage (issue 12)

from itermask.preprocess.check_inputs import check_inputs, shear_degrees  # noqa: E402


def run_check(tmp_path, images, label=None, mask=None, mask_sequence="T1w"):
    out = tmp_path / "out" / "inputs_checked.json"
    return check_inputs({k: str(v) for k, v in images.items()}, label and str(label), mask and str(mask), out,
                        mask_sequence=mask_sequence, **IDS), out


def sheared(deg: float) -> np.ndarray:
    aff = AFF.copy()
    aff[0, 1] = 2.0 * np.tan(np.radians(deg))  # column 1 leans towards x
    return aff


@pytest.mark.parametrize("case, problem", [
    ("missing_flair", "sequence 'FLAIR' image file does not exist"),
    ("random_bytes", "cannot read NIfTI header"),
    ("four_d", "expected a 3D image, got 4D with on-disk shape (6, 6, 6, 3)"),
    ("flat", "degenerate on-disk shape (8, 9, 1)"),
    ("shear", "affine has a shear of 5.00 degrees"),
])
def test_check_inputs_refuses_bad_images_before_heavy_work(tmp_path, case, problem):
    t1 = good_image(tmp_path / "t1.nii.gz")
    bad = tmp_path / "flair.nii.gz"
    if case == "random_bytes" or case == "four_d":
        bad = write_bad(tmp_path, case)
    elif case == "flat":
        good_image(bad, shape=(8, 9, 1))
    elif case == "shear":
        good_image(bad, affine=sheared(5.0))
    with pytest.raises(InputError) as exc:
        run_check(tmp_path, {"T1w": t1, "FLAIR": bad})
    assert_error(exc, bad, problem)
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("what, problem", [
    ("shape", "on-disk shape (8, 9, 11) differs from the sequence 'T1w' image's on-disk shape (8, 9, 10)"),
    ("affine", "affine differs from the sequence 'T1w' image's affine"),
])
def test_check_inputs_label_and_mask_on_their_images_on_disk_grid(tmp_path, what, problem):
    # a non-RAS image: the message quotes the shapes on disk, not after reorientation
    lps = np.diag([-2.0, -2.0, 2.0, 1.0])
    t1 = good_image(tmp_path / "t1.nii.gz", affine=lps)
    other = tmp_path / "other.nii.gz"
    if what == "shape":
        nib.save(nib.Nifti1Image(np.ones((8, 9, 11), np.uint8), lps), other)
    else:
        nib.save(nib.Nifti1Image(np.ones((8, 9, 10), np.uint8), AFF), other)
    for role in ("label", "mask"):
        with pytest.raises(InputError) as exc:
            run_check(tmp_path, {"T1w": t1}, **{role: other})
        assert_error(exc, other, problem)


def test_check_inputs_accepts_messy_but_valid_data(tmp_path):
    """Mixed voxel sizes between sequences, anisotropic voxels, a tiny (< 0.5 degree) shear,
    a single-volume 4D file, negative intensities and a multi-valued label (binarised > 0
    downstream; its values are recorded)."""
    t1 = good_image(tmp_path / "t1.nii.gz", shape=(8, 9, 10), affine=np.diag([1.0, 1.2, 3.0, 1.0]))
    flair = tmp_path / "flair.nii.gz"
    data = -np.random.default_rng(1).random((5, 6, 7, 1)).astype(np.float32) * 100
    nib.save(nib.Nifti1Image(data, sheared(0.1)), flair)
    label = tmp_path / "label.nii.gz"
    lab = np.zeros((8, 9, 10), np.int16)
    lab[2:4, 2:4, 2:4], lab[5, 5, 5] = 1, 2
    nib.save(nib.Nifti1Image(lab, np.diag([1.0, 1.2, 3.0, 1.0])), label)
    report, out = run_check(tmp_path, {"T1w": t1, "FLAIR": flair}, label=label)
    assert out.exists() and report["label"]["values"] == [0, 1, 2] and report["warnings"] == []
    assert report["images"]["FLAIR"]["shape"] == [5, 6, 7] and report["images"]["T1w"]["voxel_mm"] == [1.0, 1.2, 3.0]
    assert shear_degrees(sheared(0.1)) == pytest.approx(0.1, abs=1e-6)
    assert shear_degrees(np.diag([-1.0, 2.0, 3.0, 1.0])) == pytest.approx(0.0, abs=1e-9)


def test_negative_intensities_are_normalised(tmp_path):
    """A scanner's negative values (e.g. CT-like offsets) are fine: the brain is z-scored."""
    img = tmp_path / "neg.nii.gz"
    data = np.random.default_rng(0).normal(-500.0, 20.0, (8, 8, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, AFF), img)
    g = tmp_path / "grid.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), AFF), g)
    out = tmp_path / "out"
    pp.resample_and_normalise(img, g, out / "T1w.nii.gz", out / "T1w_hf-r15.nii.gz", repeats=3, clip_sd=3.0,
                              background="min", hf_radius=15, **IDS)
    z = nib.load(out / "T1w.nii.gz").get_fdata()
    assert np.isfinite(z).all() and abs(z.mean()) < 0.5


@pytest.mark.parametrize("bad", ["s 1", "s1\n", "../s1", "s1;rm", "s_1", ""])
def test_subject_ids_full_match_and_the_message_names_the_id(tmp_path, bad):
    from itermask.config.datasets import check_subject_ids
    from itermask.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        check_subject_ids("dsX", "split 'train'", ["ok1", bad])
    assert repr(bad) in str(exc.value) and "letters A-Z, a-z and digits 0-9 only" in str(exc.value)
    check_subject_ids("dsX", "split 'train'", ["ok1", "007", "Sub42"])


def test_check_inputs_damaged_label_names_the_file(tmp_path):
    """A label whose header reads but whose voxel data is cut short: the label's own error."""
    t1 = good_image(tmp_path / "t1.nii.gz")
    label = tmp_path / "label.nii"
    nib.save(nib.Nifti1Image(np.ones((8, 9, 10), np.float32), AFF), label)
    label.write_bytes(label.read_bytes()[:500])
    with pytest.raises(InputError) as exc:
        run_check(tmp_path, {"T1w": t1}, label=label)
    assert_error(exc, label, "cannot read NIfTI file")
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("lesion, problem", [
    ((slice(0, 0),) * 3, "label has no lesion voxel"),
    ((slice(3, 4), slice(3, 4), slice(3, 4)), "label's 1 lesion voxels vanish on the [3.0, 3.0, 3.0] mm grid"),
])
def test_label_without_lesion_on_the_grid(tmp_path, lesion, problem):
    """A labelled subject's lesion must exist, before and after nearest resampling (a one-voxel
    lesion of 2 mm falls between the voxel centres of a 3 mm grid shifted by half a voxel)."""
    image = good_image(tmp_path / "img.nii.gz", shape=(8, 8, 8))
    lab = np.zeros((8, 8, 8), np.uint8)
    lab[lesion] = 1
    label_path = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(lab, AFF), label_path)
    coarse = np.diag([3.0, 3.0, 3.0, 1.0])
    coarse[:3, 3] = 1.0
    grid_path = tmp_path / "grid.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.uint8), coarse), grid_path)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError) as exc:
        pp.resample_label(label_path, image, grid_path, out / "label.nii.gz", **IDS)
    assert_error(exc, label_path, problem)
    assert_nothing_written(out)


@pytest.mark.parametrize("kind, problem", [("nan", "sequence 'FLAIR' image: image contains 1 NaN/Inf voxels"),
                                           ("all_zero", "sequence 'FLAIR' image: image is empty"),
                                           ("truncated_gzip", "sequence 'FLAIR' image: cannot read NIfTI file")])
def test_check_inputs_reads_every_sequences_voxels_before_the_brain_mask(tmp_path, kind, problem):
    """Voxel problems of a sequence that is not the mask's fail the input check, naming the sequence."""
    t1 = good_image(tmp_path / "t1.nii.gz")
    bad = write_bad(tmp_path, kind)
    with pytest.raises(InputError) as exc:
        run_check(tmp_path, {"T1w": t1, "FLAIR": bad})
    assert_error(exc, bad, problem)
    assert_nothing_written(tmp_path / "out")


def test_check_inputs_refuses_a_zero_voxel_size_in_the_header(tmp_path):
    """pixdim 0 (nibabel would quietly read 1 mm from such a header) is refused."""
    t1 = good_image(tmp_path / "t1.nii.gz")
    img = nib.Nifti1Image(np.ones((8, 9, 10), np.float32), None)
    img.header.set_zooms((2.0, 2.0, 0.0))
    bad = tmp_path / "flair.nii.gz"
    nib.save(img, bad)
    with pytest.raises(InputError) as exc:
        run_check(tmp_path, {"T1w": t1, "FLAIR": bad})
    assert_error(exc, bad, "sequence 'FLAIR' image: the header stores no orientation and its voxel sizes "
                           "(2.0, 2.0, 0.0) are not all positive")


@pytest.mark.parametrize("values, shown", [([0.0, 0.3, 1.0], "[0.3]"), ([-1.0, 0.0, 1.0], "[-1.0]")])
def test_check_inputs_refuses_a_label_that_is_not_integer_classes(tmp_path, values, shown):
    """A probability map or a signed image as label: refused, not binarised into a full lesion."""
    t1 = good_image(tmp_path / "t1.nii.gz")
    lab = np.zeros((8, 9, 10), np.float32)
    lab[2, 2, 2:5] = values
    label = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(lab, AFF), label)
    with pytest.raises(InputError) as exc:
        run_check(tmp_path, {"T1w": t1}, label=label)
    assert_error(exc, label, f"label: values must be non-negative integers (lesion = value > 0), found {shown}")


def test_check_inputs_warns_when_no_orientation_is_stored(tmp_path):
    """qform and sform codes 0: accepted as nibabel reads it, with a warning in the report."""
    img = nib.Nifti1Image(np.random.default_rng(0).random((8, 9, 10)).astype(np.float32) + 1, None)
    img.header.set_zooms((2.0, 2.0, 2.0))
    t1 = tmp_path / "t1.nii.gz"
    nib.save(img, t1)
    assert int(nib.load(t1).header["sform_code"]) == 0 and int(nib.load(t1).header["qform_code"]) == 0
    report, _ = run_check(tmp_path, {"T1w": t1})
    assert report["warnings"] == ["T1w: neither qform nor sform is set: orientation taken from the voxel sizes alone"]
