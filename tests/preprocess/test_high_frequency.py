"""itermask.preprocess.high_frequency: the HF image at another radius, written beside its image."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from itermask.core.highfreq import high_frequency
from itermask.errors import InputError
from itermask.preprocess.high_frequency import write_high_frequency


def _write(path, data: np.ndarray, affine: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def _volume(shape=(16, 12, 10)) -> np.ndarray:
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


def test_write_high_frequency_matches_the_core_function_and_keeps_the_affine(tmp_path):
    x = _volume()
    affine = np.array([[2.0, 0, 0, -15.0], [0, 2.5, 0, 20.0], [0, 0, 3.0, -7.5], [0, 0, 0, 1]])  # RAS
    out = tmp_path / "FLAIR_hf-r3.nii.gz"
    write_high_frequency(_write(tmp_path / "FLAIR.nii.gz", x, affine), out, radius=3, dataset="ds", subject="01")
    img = nib.load(str(out))
    np.testing.assert_array_equal(img.affine, affine)
    assert img.get_data_dtype() == np.float32 and img.shape == x.shape
    np.testing.assert_allclose(img.get_fdata(), high_frequency(x, radius=3), rtol=1e-6, atol=1e-6)
    # the radius is passed through: another radius gives another image
    assert not np.allclose(img.get_fdata(), high_frequency(x, radius=5), atol=1e-3)


def test_non_ras_input_is_written_on_the_ras_grid_at_the_same_world_positions(tmp_path):
    """An LAS image (first axis flipped) is read as RAS: the output is its HF on the flipped
    grid, with the RAS affine, so each world point keeps its value (HF commutes with the flip)."""
    x = _volume()
    las = np.array([[-2.0, 0, 0, 15.0], [0, 2.0, 0, -11.0], [0, 0, 2.0, -9.0], [0, 0, 0, 1]])
    out = tmp_path / "hf.nii.gz"
    write_high_frequency(_write(tmp_path / "image.nii.gz", x, las), out, radius=3, dataset="ds", subject="01")
    img = nib.load(str(out))
    ras = las.copy()
    ras[0, 0], ras[0, 3] = 2.0, 15.0 - 2.0 * (x.shape[0] - 1)  # voxel 0 of RAS = the last voxel of LAS
    np.testing.assert_allclose(img.affine, ras)
    np.testing.assert_allclose(img.get_fdata(), high_frequency(x[::-1], radius=3), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(img.get_fdata(), high_frequency(x, radius=3)[::-1], atol=1e-5)


def test_missing_image_names_the_subject(tmp_path):
    with pytest.raises(InputError, match="does not exist") as e:
        write_high_frequency(tmp_path / "none.nii.gz", tmp_path / "hf.nii.gz", radius=3, dataset="ds", subject="07")
    assert "07" in str(e.value) and not (tmp_path / "hf.nii.gz").exists()
