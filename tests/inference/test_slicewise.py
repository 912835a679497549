"""itermask.inference.slicewise: a volume to 2D model slices and the 2D results back.

Known answers: an identity "model" (reconstruction = the slices' own image) gives back the
scaled volume; a unit error at one 2D pixel lands on the voxel(s) that pixel covers.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from itermask.core.highfreq import high_frequency
from itermask.inference.slicewise import resize_back, slices_to_volume, volume_to_slices
from itermask.io.samples import Volume

SPACING = 2.0  # mm, in-plane and axial


def make_volume(shape: tuple[int, int, int], brain_box: tuple[slice, ...], image: np.ndarray | None = None,
                seed: int = 0) -> Volume:
    """A volume with a box-shaped brain: random brain values and background 0, or ``image`` everywhere."""
    brain = np.zeros(shape, bool)
    brain[brain_box] = True
    if image is None:
        image = np.where(brain, np.random.default_rng(seed).normal(1.0, 0.5, shape), 0.0)
    image = np.asarray(image, np.float32)
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    return Volume(image, brain, None, None, affine, {"image": "image.nii.gz"})


def identity_results(sl: dict[str, np.ndarray]) -> list[SimpleNamespace]:
    """Per slice: reconstruction = the slice's own image, zero error, empty mask."""
    return [SimpleNamespace(recon=torch.from_numpy(img), error=torch.zeros(img.shape),
                            mask=torch.zeros(img.shape, dtype=torch.bool)) for img in sl["image"]]


def test_scaled_volume_follows_the_documented_scaling():
    vol = make_volume((20, 24, 10), np.s_[4:16, 6:18, 2:8])
    sl = volume_to_slices(vol, 24, 3, 48.0)
    p90 = np.percentile(vol.image[vol.brain], 90)  # background (median outside the brain) is 0
    np.testing.assert_allclose(sl["scaled"], -3.0 + 6.0 * vol.image / p90, rtol=1e-5, atol=1e-5)
    assert sl["z"].tolist() == [2, 3, 4, 5, 6, 7] and sl["fov"] == 24


@pytest.mark.parametrize("fov_mm,offset", [(48.0, (2, 0)), (64.0, (6, 4)), (32.0, (-2, -4))])
def test_identity_round_trip_without_resizing(fov_mm, offset):
    """size = the field in voxels: no resizing, so the field is exactly the volume slice shifted
    by ``offset`` = (field - H) // 2 padding (negative: cropping) per axis."""
    shape = (20, 24, 10)
    vol = make_volume(shape, np.s_[4:16, 6:18, 2:8])
    fov = int(fov_mm / SPACING)
    sl = volume_to_slices(vol, fov, 3, fov_mm)
    assert sl["fov"] == fov and sl["image"].shape == (6, fov, fov) and sl["z"].tolist() == [2, 3, 4, 5, 6, 7]
    di, dj = offset
    for k, z in enumerate(sl["z"]):
        # field pixel (i + di, j + dj) is voxel (i, j, z); -3 (background) where the field pads the slice
        for i, j in ((4, 6), (15, 17), (10, 12)):
            assert sl["image"][k, i + di, j + dj] == sl["scaled"][i, j, z]
            assert sl["brain"][k, i + di, j + dj]
        np.testing.assert_allclose(sl["hf"][k], high_frequency(sl["image"][k], radius=3), atol=1e-4)
    if di > 0:
        assert (sl["image"][:, :di] == -3.0).all() and not sl["brain"][:, :di].any()
    out = slices_to_volume(vol, sl, identity_results(sl))
    np.testing.assert_array_equal(out["recon"], sl["scaled"])  # outside the field too: the input is kept
    assert not out["error"].any() and not out["mask"].any()


def test_identity_round_trip_with_downsampling_is_close_inside_the_brain():
    """A linear ramp (background included, so the scaled volume is linear too) survives area averaging
    by 2 and bilinear upsampling everywhere but the field's outermost voxels."""
    shape = (24, 24, 10)
    i, j, k = np.indices(shape)
    vol = make_volume(shape, np.s_[5:19, 4:20, 3:7], image=1.0 + 0.1 * i - 0.05 * j + 0.02 * k)
    sl = volume_to_slices(vol, 12, 3, 48.0)
    assert sl["image"].shape == (4, 12, 12) and sl["z"].tolist() == [3, 4, 5, 6]
    out = slices_to_volume(vol, sl, identity_results(sl))
    np.testing.assert_allclose(out["recon"][vol.brain], sl["scaled"][vol.brain], atol=1e-4)
    inner = np.s_[1:-1, 1:-1, 3:7]
    np.testing.assert_allclose(out["recon"][inner], sl["scaled"][inner], atol=1e-4)
    assert np.abs(out["recon"][0, :, 3:7] - sl["scaled"][0, :, 3:7]).min() > 0.01  # the edge: clamped, not linear
    np.testing.assert_array_equal(out["recon"][:, :, :3], sl["scaled"][:, :, :3])  # slices without brain


def _unit_error_results(sl: dict[str, np.ndarray], k: int, pixel: tuple[int, int]) -> list[SimpleNamespace]:
    res = identity_results(sl)
    res[k].error[pixel] = 1.0
    res[k].mask[pixel] = True
    return res


def test_unit_error_pixel_lands_on_its_voxel_without_resizing():
    """Field 32 px on a 20 x 24 slice: padding (6, 4), so pixel (12, 15) of slice 3 is voxel (6, 11, z=5)."""
    vol = make_volume((20, 24, 10), np.s_[2:18, 3:21, 2:8])
    sl = volume_to_slices(vol, 32, 3, 64.0)
    assert sl["z"][3] == 5
    out = slices_to_volume(vol, sl, _unit_error_results(sl, 3, (12, 15)))
    expected = np.zeros(vol.image.shape, np.float32)
    expected[6, 11, 5] = 1.0
    np.testing.assert_array_equal(out["error"], expected)
    np.testing.assert_array_equal(out["mask"], expected > 0)


def test_unit_error_pixel_spreads_bilinearly_over_the_voxels_it_covers():
    """Field 24 voxels at 12 px: pixel (5, 5) covers voxels 10-11 on each axis. Bilinear upsampling
    (half-pixel centres) gives the weights 1/4, 3/4, 3/4, 1/4 on voxels 9..12 per axis; the mask
    (> 0.5) is the 2 x 2 block the pixel covers. Error outside the brain is dropped."""
    vol = make_volume((24, 24, 10), np.s_[4:20, 4:11, 2:8])  # the brain stops after column 10
    sl = volume_to_slices(vol, 12, 3, 48.0)
    k = 2
    z = int(sl["z"][k])
    out = slices_to_volume(vol, sl, _unit_error_results(sl, k, (5, 5)))
    w = np.array([0.25, 0.75, 0.75, 0.25])
    expected = np.zeros(vol.image.shape, np.float32)
    expected[9:13, 9:13, z] = np.outer(w, w)
    expected[~vol.brain] = 0.0
    np.testing.assert_allclose(out["error"], expected, atol=1e-6)
    mask = np.zeros(vol.image.shape, bool)
    mask[10:12, 10, z] = True  # column 11 lies outside the brain
    np.testing.assert_array_equal(out["mask"], mask)


def test_resize_back_modes():
    """Upsampling is bilinear (a constant stays constant); shrinking is area averaging."""
    arr = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    np.testing.assert_allclose(resize_back(arr, (2, 2))[0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_allclose(resize_back(np.full((2, 3, 3), 7.0), (5, 6)), np.full((2, 5, 6), 7.0))
    assert resize_back(arr, (4, 4)).tolist() == arr.tolist()
