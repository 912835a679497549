"""2D slices (METHOD.md §1.7, issue 10): field of view in mm, real pixel spacing, the test
slice inside the central range and left-out subjects."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from itermask.io.samples import read_slices
from itermask.preprocess.slices2d import extract_slices2d, field_pixels, from_field, slice_affine, to_field


def test_field_crop_pad_and_back():
    a = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    f = to_field(a, 5, -3.0)  # rows padded 1 / 0 (start (4 - 5) // 2 = -1), columns 0..4 kept
    assert f.shape == (2, 5, 5)
    np.testing.assert_array_equal(f[:, 1:, :], a[:, :, 0:5])
    assert (f[:, 0, :] == -3.0).all()
    back = from_field(f, (4, 6), 0.0)
    np.testing.assert_array_equal(back[:, :, :5], a[:, :, :5])
    assert (back[:, :, 5] == 0).all()
    assert field_pixels(240, 1.0) == 240 and field_pixels(192, 4.0) == 48


def test_slice_affine_has_the_pixel_size_of_the_field():
    aff = np.diag([-1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = [95.0, -100.0, -80.0]
    out = slice_affine(aff, (192, 192), 240, 128)  # the reference: 240 mm -> 128 px
    np.testing.assert_allclose(np.abs(np.diag(out)[:3]), [1.875, 1.875, 1.0])
    # pixel (0, 0) centre: field index 0.4375 = box index -24 + 0.4375 (24 px of padding)
    np.testing.assert_allclose(out[:3, 3], aff[:3, :3] @ [-24 + 0.4375, -24 + 0.4375, 0] + aff[:3, 3])


def _volume(tmp_path, lesion_slices):
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    shape = (16, 16, 20)
    brain = np.zeros(shape, np.uint8)
    brain[3:13, 3:13, 2:18] = 1
    img = np.where(brain > 0, np.random.default_rng(0).normal(size=shape), -3.0).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    for k, n in lesion_slices.items():
        label[5:5 + n, 5:8, k] = 1
    paths = {}
    for name, arr in (("image", img), ("brain", brain), ("label", label)):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(arr, aff), paths[name])
    return paths


def _extract(paths, out, logs, role="test"):
    extract_slices2d(paths["image"], paths["brain"], out, label_path=paths["label"], role=role, size=16,
                     field_of_view_mm=40.0, train_range_fraction=(0.4, 0.6), hf_radius=3, dataset="d",
                     subject="s1", log=logs.append)


def test_test_slice_is_the_largest_lesion_of_the_central_range(tmp_path):
    paths = _volume(tmp_path, {3: 6, 9: 2, 10: 3})  # the largest lesion (slice 3) lies outside 8..11
    logs: list[str] = []
    _extract(paths, tmp_path / "t.npz", logs)
    s = read_slices(tmp_path / "t.npz")
    assert s.index.tolist() == [10] and s.left_out_reason is None and not logs
    assert s.image.shape == (1, 16, 16)
    np.testing.assert_allclose(np.linalg.norm(s.affine[:3, :2], axis=0), 2.5)  # 40 mm / 16 px


def test_subject_without_lesion_in_the_range_is_left_out_and_logged(tmp_path):
    paths = _volume(tmp_path, {3: 6, 15: 2})
    logs: list[str] = []
    _extract(paths, tmp_path / "t.npz", logs)
    s = read_slices(tmp_path / "t.npz")
    assert s.image.shape == (0, 16, 16) and s.index.size == 0
    assert "central axial range 8-11" in s.left_out_reason
    assert len(logs) == 1 and "d/sub-s1: left out" in logs[0]


def test_a_file_with_no_slice_and_no_reason_is_refused(tmp_path):
    from itermask.errors import InputError

    np.savez(tmp_path / "e.npz", image=np.zeros((0, 4, 4)), hf=np.zeros((0, 4, 4)), brain=np.zeros((0, 4, 4), bool),
             index=np.zeros(0, int))
    with pytest.raises(InputError, match="n >= 1"):
        read_slices(tmp_path / "e.npz")
