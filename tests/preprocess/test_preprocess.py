"""Preprocessing (METHOD.md §1): pure functions against known answers, then the stage functions."""
from __future__ import annotations

import importlib.resources
import json
import time
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
import pytest
import torch

from types import SimpleNamespace

from itermask.preprocess import brain_mask, normalise, qc, resample_label, slices2d
from itermask.errors import InputError

pp = SimpleNamespace(  # the stage functions, each in the module named after its stage
    make_brain_mask=brain_mask.make_brain_mask, resample_mask=brain_mask.resample_mask,
    qc_skullstrip=brain_mask.qc_skullstrip, resample_label=resample_label.resample_label,
    resample_and_normalise=normalise.resample_and_normalise, extract_slices2d=slices2d.extract_slices2d,
    qc_subject=qc.qc_subject, qc_table=qc.qc_table,
)
from itermask.core.highfreq import high_frequency
from itermask.io.device import autocast_dtype
from itermask.io.nifti import load_nifti
from itermask.preprocess.normalise import iterative_zscore
from itermask.preprocess.qc import intensity_stats, subject_stats
from itermask.preprocess.resample import (
    ants_to_nib,
    bbox_centre,
    box_slices,
    crop_or_pad_to_box,
    nib_to_ants,
    resample_to_grid,
    resample_to_spacing,
)
from itermask.preprocess.slices2d import (
    axial_range,
    resize_slices,
    scale_for_2d,
    select_test_slice,
    select_train_slices,
)

torch.set_num_threads(1)
# the pydeface mean head template, wherever the installed package lives (any venv, any Python)
TEMPLATE = Path(str(importlib.resources.files("pydeface") / "data" / "mean_reg2mean.nii.gz"))


def oblique_affine(perm_flip: np.ndarray, zooms, angles_deg=(8.0, -5.0, 12.0), offset=(10.0, -20.0, 30.0)) -> np.ndarray:
    """Voxel-to-RAS affine: rotation @ axis permutation/flip @ zooms, plus a translation."""
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    aff = np.eye(4)
    aff[:3, :3] = rot @ perm_flip @ np.diag(zooms)
    aff[:3, 3] = offset
    return aff


PIR = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float)  # columns: i -> P, j -> I, k -> R


def world_coords(shape, affine) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(tuple(shape) + (3,))


# --------------------------------------------------------------------------- normalisation
def test_iterative_zscore_known_answer():
    # brain = 100 voxels at a-b, 100 at a+b, one outlier X; outside = 5 voxels of junk.
    a, b, X = 50.0, 4.0, 400.0
    brain_vals = np.r_[np.full(100, a - b), np.full(100, a + b), X]
    image = np.r_[brain_vals, [1.0, 2.0, 3.0, 1e4, -7.0]].reshape(1, 1, -1)
    brain = np.r_[np.ones(201, bool), np.zeros(5, bool)].reshape(1, 1, -1)
    # first z-score puts the outlier at about +14 SD (> 3), the bulk at about +-0.7; the clipped
    # re-estimate uses the bulk only, whose mean is a and std b: bulk -> -1/+1, outlier -> (X-a)/b.
    out = iterative_zscore(image, brain, repeats=3, clip_sd=3.0, background="min")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, :100], -1.0, atol=1e-6)
    np.testing.assert_allclose(out[0, 0, 100:200], 1.0, atol=1e-6)
    assert out[0, 0, 200] == pytest.approx((X - a) / b, rel=1e-6)
    np.testing.assert_allclose(out[0, 0, 201:], -1.0)  # background = brain minimum
    out0 = iterative_zscore(image, brain, repeats=0, clip_sd=3.0, background=2.5)
    expected0 = (brain_vals - brain_vals.mean()) / brain_vals.std()
    np.testing.assert_allclose(out0[0, 0, :201], expected0, rtol=1e-5)
    np.testing.assert_allclose(out0[0, 0, 201:], 2.5)


def test_iterative_zscore_counts_every_repeat():
    """Heavy-tailed brain whose clipped set shrinks at each of 4 repeats: output = an explicit loop's."""
    tail = [3.2, 3.6, 4.2, 5.0, 6.0, 7.5, 9.5, 12.0, 16.0, 22.0, 30.0, 45.0]
    brain_vals = np.r_[np.full(50, 9.0), np.full(50, 11.0), 10.0 + np.array(tail)]  # bulk 10 +- 1
    image = np.r_[brain_vals, [0.0, -3.0, 500.0]].reshape(1, -1, 1)
    brain = np.r_[np.ones(brain_vals.size, bool), np.zeros(3, bool)].reshape(1, -1, 1)

    def expected(repeats):
        z = (brain_vals - brain_vals.mean()) / brain_vals.std()
        kept = []
        for _ in range(repeats):
            keep = z[np.abs(z) <= 3.0]
            kept.append(keep.size)
            z = (z - keep.mean()) / keep.std()
        return z, kept

    z4, kept = expected(4)
    # 112 brain voxels: the clipped set loses voxels at every repeat (the run never converges early)
    assert kept == [109, 106, 103, 102]
    for repeats in (1, 2, 3, 4):
        out = iterative_zscore(image, brain, repeats=repeats, clip_sd=3.0, background="min")
        z = expected(repeats)[0]
        np.testing.assert_allclose(out[brain], z, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out[~brain], z.min(), rtol=1e-6)
    out3 = iterative_zscore(image, brain, repeats=3, clip_sd=3.0, background="min")
    out4 = iterative_zscore(image, brain, repeats=4, clip_sd=3.0, background="min")
    assert np.abs(out3[brain] - out4[brain]).max() > 1e-3


def test_iterative_zscore_matches_explicit_loop():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 15, size=(12, 12, 12))
    img[2:4, 2:4, 2:4] = 400  # hyperintense outliers
    brain = np.zeros(img.shape, bool)
    brain[1:11, 1:11, 1:11] = True
    vals = [float(v) for v in img[brain]]
    for _ in range(4):  # first z-score + 3 repeats, with plain Python statistics
        keep = vals if _ == 0 else [v for v in vals if -3.0 <= v <= 3.0]
        m = sum(keep) / len(keep)
        s = (sum((v - m) ** 2 for v in keep) / len(keep)) ** 0.5
        vals = [(v - m) / s for v in vals]
    out = iterative_zscore(img, brain, repeats=3, clip_sd=3.0, background="min")
    np.testing.assert_allclose(out[brain], np.array(vals), rtol=1e-5, atol=1e-5)
    assert np.all(out[~brain] == pytest.approx(min(vals), rel=1e-6))


def test_iterative_zscore_rejects_constant_brain():
    with pytest.raises(ValueError, match="constant"):
        iterative_zscore(np.ones((4, 4, 4)), np.ones((4, 4, 4), bool), repeats=3, clip_sd=3.0, background="min")


# --------------------------------------------------------------------------- resampling
def test_ants_conversion_matches_ants_reader(tmp_path):
    aff = oblique_affine(PIR, (1.2, 0.9, 2.0))
    data = np.random.default_rng(0).random((9, 11, 7)).astype(np.float32)
    img = nib.Nifti1Image(data, aff)
    nib.save(img, tmp_path / "a.nii.gz")
    read = ants.image_read(str(tmp_path / "a.nii.gz"))
    mine = nib_to_ants(img)
    np.testing.assert_allclose(mine.origin, read.origin, atol=1e-4)
    np.testing.assert_allclose(mine.spacing, read.spacing, atol=1e-5)
    np.testing.assert_allclose(mine.direction, read.direction, atol=1e-5)
    np.testing.assert_array_equal(mine.numpy(), read.numpy())
    np.testing.assert_allclose(ants_to_nib(mine).affine, aff, atol=1e-6)


def test_linear_resampling_reproduces_a_world_linear_function():
    # f(world) = c . xyz + d is reproduced exactly by linear interpolation inside the image:
    # a wrong LPS/RAS conversion or index order would break it.
    c, d = np.array([0.7, -1.3, 2.1]), 5.0
    aff = oblique_affine(PIR, (1.2, 0.9, 2.0))
    shape = (24, 28, 14)
    data = (world_coords(shape, aff) @ c + d).astype(np.float32)
    img = nib.Nifti1Image(data, aff)
    res = resample_to_spacing(img, 1.5, "linear")
    assert np.allclose(np.linalg.norm(res.affine[:3, :3], axis=0), 1.5)
    expected = world_coords(res.shape, res.affine) @ c + d
    inner = tuple(slice(2, n - 2) for n in res.shape)
    np.testing.assert_allclose(res.get_fdata()[inner], expected[inner], atol=1e-3)
    # onto an axis-aligned RAS grid well inside the source field of view
    centre = aff[:3, :3] @ (np.array(shape) - 1) / 2 + aff[:3, 3]
    ref = np.diag([2.0, 2.0, 2.0, 1.0])
    ref[:3, 3] = centre - 2.0 * 3
    out = resample_to_grid(img, (7, 7, 7), ref, "linear")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, world_coords((7, 7, 7), ref) @ c + d, atol=1e-3)


def test_nearest_resampling_keeps_labels_and_dtype():
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[2:5, 2:5, 2:5] = 1
    lab[6:9, 6:9, 6:9] = 2
    res = resample_to_spacing(nib.Nifti1Image(lab, np.diag([1.0, 1.0, 1.0, 1.0])), 0.5, "nearest")
    out = np.asanyarray(res.dataobj)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1, 2}
    assert (out == 1).sum() == 27 * 8 and (out == 2).sum() == 27 * 8


def test_reorientation_and_world_space_content(tmp_path):
    ras_aff = oblique_affine(np.eye(3), (1.0, 1.5, 2.0), angles_deg=(0, 0, 0))
    rng = np.random.default_rng(1)
    ras = rng.random((12, 10, 8)).astype(np.float32) + 1
    ras_img = nib.Nifti1Image(ras, ras_aff)
    for codes in [("L", "P", "S"), ("P", "I", "R")]:
        tr = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")),
                                             nib.orientations.axcodes2ornt(codes))
        other = nib.Nifti1Image(nib.orientations.apply_orientation(ras, tr),
                                ras_aff @ nib.orientations.inv_ornt_aff(tr, ras.shape))
        assert nib.aff2axcodes(other.affine) == codes
        nib.save(other, tmp_path / "o.nii.gz")
        loaded = load_nifti(tmp_path / "o.nii.gz")
        assert nib.aff2axcodes(loaded.affine) == ("R", "A", "S")
        np.testing.assert_allclose(loaded.affine, ras_aff, atol=1e-5)
        np.testing.assert_array_equal(np.asanyarray(loaded.dataobj), ras)
        # resampling the raw non-RAS image onto a grid gives the same as resampling the RAS one
        grid_aff = np.diag([1.3, 1.3, 1.3, 1.0])
        grid_aff[:3, 3] = ras_aff[:3, 3] + 1.0
        a = resample_to_grid(other, (8, 8, 8), grid_aff, "linear")
        b = resample_to_grid(ras_img, (8, 8, 8), grid_aff, "linear")
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert np.count_nonzero(a) > 100


# --------------------------------------------------------------------------- crop / pad
@pytest.mark.parametrize(
    "shape, box, centre, start",
    [
        ((20,), (10,), (14.5,), (10,)),  # even box on a half-integer centre: exact
        ((20,), (4,), (14.5,), (13,)),
        ((20,), (5,), (10.0,), (8,)),  # odd box on an integer centre: exact
        ((20,), (4,), (5.0,), (4,)),  # even box on an integer centre: tie -> higher start
        ((6,), (10,), (2.5,), (-2,)),  # box bigger than the image: padding both sides
        ((30,), (8,), (1.0,), (-2,)),  # mask at the edge: box runs off the start
    ],
)
def test_box_start(shape, box, centre, start):
    s, src, dst = box_slices(shape, box, centre)
    assert tuple(s) == start
    n, b = shape[0], box[0]
    assert src[0] == slice(max(start[0], 0), min(start[0] + b, n))
    assert dst[0].start == src[0].start - start[0] and dst[0].stop - dst[0].start == src[0].stop - src[0].start


def test_crop_or_pad_content_and_affine():
    data = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    mask = np.zeros(data.shape, bool)
    mask[0:2, 3:6, 6:8] = True  # bbox centre (0.5, 4, 6.5)
    aff = oblique_affine(PIR, (1.0, 2.0, 1.5))
    box = (4, 5, 6)
    out, new_aff = crop_or_pad_to_box(data, aff, box, mask, fill=-1)
    # starts: 0.5-1.5 -> -1 ; 4-2 -> 2 ; 6.5-2.5 -> 4 (runs past the end: 4..9 of 8)
    expected = np.full(box, -1, np.float32)
    expected[1:4, 0:5, 0:4] = data[0:3, 2:7, 4:8]
    np.testing.assert_array_equal(out, expected)
    # every output voxel keeps its world coordinate
    for j in [(1, 0, 0), (3, 4, 3), (2, 2, 1)]:
        src = np.array(j) + np.array([-1, 2, 4])
        np.testing.assert_allclose(new_aff[:3, :3] @ j + new_aff[:3, 3], aff[:3, :3] @ src + aff[:3, 3])
        assert out[j] == data[tuple(src)]
    np.testing.assert_allclose(bbox_centre(mask), [0.5, 4.0, 6.5])
    out2, _ = crop_or_pad_to_box(data, aff, (2, 2, 2), mask)
    np.testing.assert_array_equal(out2, data[0:2, 4:6, 6:8])  # y: centre 4, tie -> start 4


# --------------------------------------------------------------------------- 2D slices
def test_scale_for_2d_maps_background_and_p90():
    rng = np.random.default_rng(0)
    vol = np.full((10, 10, 10), -2.0)
    brain = np.zeros(vol.shape, bool)
    brain[2:8, 2:8, 2:8] = True
    vol[brain] = rng.normal(size=brain.sum())
    out = scale_for_2d(vol, brain)
    np.testing.assert_allclose(out[~brain], -3.0, atol=1e-6)
    assert np.percentile(out[brain], 90) == pytest.approx(3.0, abs=1e-5)
    # linear: ranks preserved and affine relation exact
    p90 = np.percentile(vol[brain], 90)
    np.testing.assert_allclose(out, -3 + 6 * (vol + 2) / (p90 + 2), rtol=1e-5, atol=1e-5)


def test_resize_slices_area_and_mask_rule():
    img = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    np.testing.assert_allclose(resize_slices(img, 2)[0], [[2.5, 4.5], [10.5, 12.5]])
    mask = np.zeros((1, 4, 4), bool)
    mask[0, 0, 0:2] = True  # block (0,0) half full -> kept
    mask[0, 2, 2] = True  # block (1,1) quarter full -> dropped
    out = resize_slices(mask, 2)
    assert out.dtype == bool
    np.testing.assert_array_equal(out[0], [[True, False], [False, False]])
    # non-integer factor (ref 240 -> 128): the reference's MONAI Resized, i.e. torch's "area" =
    # adaptive average pooling, windows [floor(i·n/m), ceil((i+1)·n/m)) (bilinear would blend 2 pixels)
    x = np.random.default_rng(0).random((2, 12, 12)).astype(np.float32)
    r = resize_slices(x, 8)
    win = [(int(np.floor(i * 12 / 8)), int(np.ceil((i + 1) * 12 / 8))) for i in range(8)]
    want = np.array([[[x[k, a:b, c:d].mean() for (c, d) in win] for (a, b) in win] for k in range(2)])
    np.testing.assert_allclose(r, want, rtol=1e-5)
    np.testing.assert_allclose(resize_slices(np.full((1, 12, 12), 3.0, np.float32), 8), 3.0, rtol=1e-6)


def test_slice_selection():
    assert list(axial_range(155, (0.45, 0.58))) == list(range(70, 90))  # the reference's 70-89
    # the default, in the 192 box: 20 slices about its centre as 70-89 about the centre of 155
    from itermask.config.schema import load_schema

    slices2d = load_schema()["properties"]["preprocess"]["properties"]["slices2d"]["properties"]
    assert list(axial_range(192, slices2d["train_range_fraction"]["default"])) == list(range(89, 109))
    brain = np.zeros((4, 4, 20), bool)
    brain[1:3, 1:3, 3:16] = True
    label = np.zeros_like(brain)
    label[1, 1, 10] = True
    label[1:3, 1:3, 12] = True
    # range 0.45..0.7 of 20 -> 9..13
    np.testing.assert_array_equal(select_train_slices(label, brain, (0.45, 0.7)), [9, 11, 13])
    np.testing.assert_array_equal(select_train_slices(None, brain, (0.45, 0.7)), [9, 10, 11, 12, 13])
    assert select_test_slice(label, (0.45, 0.7)) == 12
    assert select_test_slice(label, (0.5, 0.6)) == 10  # range 10..11: the largest lesion of the range
    # the largest lesion outside the central range is not taken (issue 10): none in range -> None
    outside = np.zeros_like(label)
    outside[1:3, 1:3, 2] = True
    outside[1, 1, 11] = True
    assert select_test_slice(outside, (0.45, 0.7)) == 11
    assert select_test_slice(outside, (0.6, 0.7)) is None
    assert select_test_slice(np.zeros_like(label), (0.45, 0.7)) is None


# --------------------------------------------------------------------------- QC stats
def test_subject_stats():
    vol = np.zeros((10, 10, 10))
    brain = np.zeros(vol.shape, bool)
    brain[:5] = True
    vol[brain] = np.arange(500)
    s = subject_stats({"T1w": vol}, brain, voxel_volume_ml=0.008)
    assert s["brain_volume_ml"] == pytest.approx(4.0)
    st = s["sequences"]["T1w"]
    assert st["min"] == 0 and st["max"] == 499 and st["mean"] == pytest.approx(249.5)
    assert st["p1"] == pytest.approx(4.99) and st["p99"] == pytest.approx(494.01)
    assert intensity_stats(vol, brain)["std"] == pytest.approx(np.arange(500).std())


# --------------------------------------------------------------------------- stages
def synthetic_subject(tmp_path: Path):
    """A 'head' with an ellipsoid brain and a lesion, stored in PIR orientation at 2x2.5x3 mm."""
    shape = (40, 36, 32)
    ras_aff = np.diag([2.0, 2.5, 3.0, 1.0])
    ras_aff[:3, 3] = [-40, -45, -48]
    xyz = world_coords(shape, ras_aff)
    r2 = (xyz[..., 0] / 30) ** 2 + (xyz[..., 1] / 36) ** 2 + ((xyz[..., 2] - 4) / 30) ** 2
    brain = r2 < 1
    rng = np.random.default_rng(0)
    t1 = np.where(brain, 100 + 10 * rng.normal(size=shape), 0).astype(np.float32)
    flair = np.where(brain, 50 + 5 * rng.normal(size=shape), 0).astype(np.float32)
    lesion = ((xyz[..., 0] - 8) ** 2 + (xyz[..., 1] - 5) ** 2 + (xyz[..., 2] - 14) ** 2) < 7**2
    flair[lesion] += 40
    tr = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt("PIR"))
    aff = ras_aff @ nib.orientations.inv_ornt_aff(tr, shape)
    paths = {}
    for name, arr in [("T1w", t1), ("FLAIR", flair), ("label", lesion.astype(np.uint8) * 2)]:
        paths[name] = tmp_path / "raw" / f"{name}.nii.gz"
        paths[name].parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(nib.orientations.apply_orientation(arr, tr), aff), paths[name])
    return paths, lesion, ras_aff


def world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ np.argwhere(mask).mean(axis=0) + affine[:3, 3]


def test_stages_end_to_end(tmp_path):
    paths, lesion, ras_aff = synthetic_subject(tmp_path)
    out = tmp_path / "preproc"
    ids = dict(dataset="demo", subject="s01")
    pp.make_brain_mask(paths["T1w"], out / "native_brainmask.nii.gz", method="stripped", mask_path=None, device="cpu",
                       amp=True, **ids)
    native = nib.load(out / "native_brainmask.nii.gz")
    assert nib.aff2axcodes(native.affine) == ("R", "A", "S") and native.get_data_dtype() == np.uint8
    np.testing.assert_allclose(native.affine, ras_aff, atol=1e-5)

    pp.resample_mask(out / "native_brainmask.nii.gz", out / "brainmask.nii.gz", spacing_mm=3.0, box=[32, 32, 32], **ids)
    grid = nib.load(out / "brainmask.nii.gz")
    assert grid.shape == (32, 32, 32) and np.allclose(np.abs(np.diag(grid.affine)[:3]), 3.0)
    gmask = np.asanyarray(grid.dataobj) > 0
    # the brain's bounding box is centred in the box (within a voxel) and keeps its world centre
    np.testing.assert_allclose(bbox_centre(gmask), (np.array(grid.shape) - 1) / 2, atol=1.0)
    np.testing.assert_allclose(world_centroid(gmask, grid.affine),
                               world_centroid(np.asanyarray(native.dataobj) > 0, native.affine), atol=1.0)
    assert abs(gmask.sum() * 27 - (np.asanyarray(native.dataobj) > 0).sum() * 15) / (gmask.sum() * 27) < 0.05

    pp.resample_label(paths["label"], paths["FLAIR"], out / "brainmask.nii.gz", out / "label.nii.gz", **ids)
    lab = nib.load(out / "label.nii.gz")
    assert lab.get_data_dtype() == np.uint8 and set(np.unique(lab.get_fdata())) <= {0, 1}
    np.testing.assert_allclose(lab.affine, grid.affine)
    labm = lab.get_fdata() > 0
    np.testing.assert_allclose(world_centroid(labm, lab.affine), world_centroid(lesion, ras_aff), atol=1.0)
    # linear resampling of the FLAIR onto the grid, as the stage does it
    flair_rs = resample_to_grid(load_nifti(paths["FLAIR"]), grid.shape, grid.affine, "linear")
    assert flair_rs[labm].mean() > flair_rs[gmask & ~labm].mean() + 25  # lesion landed on the lesion

    pp.resample_and_normalise(paths["FLAIR"], out / "brainmask.nii.gz", out / "FLAIR.nii.gz",
                              out / "FLAIR_hf.nii.gz", repeats=3, clip_sd=3.0, background="min", hf_radius=5, **ids)
    z = nib.load(out / "FLAIR.nii.gz").get_fdata(dtype=np.float32)
    assert z.dtype == np.float32
    np.testing.assert_allclose(nib.load(out / "FLAIR.nii.gz").affine, grid.affine)
    np.testing.assert_allclose(z, iterative_zscore(flair_rs, gmask, repeats=3, clip_sd=3.0, background="min"), atol=1e-6)
    hf = nib.load(out / "FLAIR_hf.nii.gz").get_fdata(dtype=np.float32)
    np.testing.assert_allclose(hf, high_frequency(z, radius=5), atol=1e-5)

    fov = 120.0  # 40 voxels of 3 mm: the 96 mm box padded to the 2D field of view
    pp.extract_slices2d(out / "FLAIR.nii.gz", out / "brainmask.nii.gz", out / "test.npz",
                        label_path=out / "label.nii.gz", role="test", size=16, train_range_fraction=(0.3, 0.7),
                        hf_radius=3, field_of_view_mm=fov, log=print, **ids)
    with np.load(out / "test.npz") as npz:
        assert set(npz.files) == {"image", "hf", "brain", "label", "index", "role", "pixel_mm", "field_of_view_mm",
                                  "affine"}
        assert str(npz["role"]) == "test" and npz["image"].shape == (1, 16, 16)
        area = labm.sum(axis=(0, 1))
        r = range(round(0.3 * labm.shape[2]), round(0.7 * labm.shape[2]))
        assert int(npz["index"][0]) == max(r, key=lambda k: (area[k], -k))
        assert float(npz["pixel_mm"]) == fov / 16
        np.testing.assert_allclose(np.linalg.norm(npz["affine"][:3, :2], axis=0), fov / 16)
        assert npz["label"].dtype == bool and npz["label"].any() and npz["brain"].dtype == bool
        np.testing.assert_allclose(npz["hf"][0], high_frequency(npz["image"][0], radius=3), atol=1e-4)
        # scaling: the box corner is background -> -3 (area-averaged corners stay background)
        assert npz["image"][0, 0, 0] == pytest.approx(-3.0)
    pp.extract_slices2d(out / "FLAIR.nii.gz", out / "brainmask.nii.gz", out / "train.npz",
                        label_path=out / "label.nii.gz", role="train", size=32, train_range_fraction=(0.45, 0.58),
                        hf_radius=15, field_of_view_mm=fov, log=print, **ids)
    with np.load(out / "train.npz") as npz:
        idx = npz["index"]
        assert all(14 <= k < 19 for k in idx) and not npz["label"].any()
        expected = [k for k in range(14, 19) if not labm[:, :, k].any()]
        assert 0 < len(expected) < 5  # the lesion really removes some central slices
        np.testing.assert_array_equal(idx, expected)
    pp.extract_slices2d(out / "FLAIR.nii.gz", out / "brainmask.nii.gz", out / "all.npz", label_path=None, role="all",
                        size=32, train_range_fraction=(0.45, 0.58), hf_radius=15, field_of_view_mm=fov, log=print,
                        **ids)
    with np.load(out / "all.npz") as npz:
        np.testing.assert_array_equal(npz["index"], np.flatnonzero(gmask.any(axis=(0, 1))))
        assert npz["image"].dtype == np.float32 and not npz["label"].any()

    pp.qc_subject({"FLAIR": str(out / "FLAIR.nii.gz")}, out / "brainmask.nii.gz", tmp_path / "qc" / "s01.png",
                  tmp_path / "qc" / "s01.json", label_path=out / "label.nii.gz", **ids)
    rec = json.loads((tmp_path / "qc" / "s01.json").read_text())
    assert rec["brain_volume_ml"] == pytest.approx(gmask.sum() * 0.027)
    assert rec["sequences"]["FLAIR"]["mean"] == pytest.approx(float(z[gmask].mean()), abs=1e-5)
    assert (tmp_path / "qc" / "s01.png").stat().st_size > 1000
    pp.qc_table({"s01": tmp_path / "qc" / "s01.json", "s02": tmp_path / "qc" / "s01.json"}, tmp_path / "qc" / "table.tsv",
                dataset="ds")
    lines = (tmp_path / "qc" / "table.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert header[:2] == ["dataset", "subject"] and "FLAIR_p99" in header and len(lines) == 3
    assert float(lines[1].split("\t")[header.index("brain_volume_ml")]) == pytest.approx(rec["brain_volume_ml"], rel=1e-5)
    assert not list(tmp_path.rglob(".*tmp*"))


def test_pattern_mask(tmp_path):
    aff = np.diag([-2.0, 2.0, 2.0, 1.0])
    img = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32) + 1
    m = np.zeros((8, 8, 8), np.uint8)
    m[2:6, 2:6, 2:6] = 3
    nib.save(nib.Nifti1Image(img, aff), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(m, aff), tmp_path / "m.nii.gz")
    pp.make_brain_mask(tmp_path / "img.nii.gz", tmp_path / "out.nii.gz", method="pattern",
                       mask_path=tmp_path / "m.nii.gz", device="cpu", amp=True, dataset="d", subject="s")
    out = nib.load(tmp_path / "out.nii.gz")
    assert nib.aff2axcodes(out.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), (m[::-1] > 0).astype(np.uint8))
    nib.save(nib.Nifti1Image(m, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "bad.nii.gz")
    with pytest.raises(InputError, match="affine differs"):
        pp.make_brain_mask(tmp_path / "img.nii.gz", tmp_path / "out2.nii.gz", method="pattern",
                           mask_path=tmp_path / "bad.nii.gz", device="cpu", amp=True, dataset="d", subject="s")
    assert not (tmp_path / "out2.nii.gz").exists()


def test_deepbet_on_template_head(tmp_path):
    """One real deepbet run on the pydeface mean head at 2 mm (timing: ~5-10 s on 2 CPU cores)."""
    head = resample_to_spacing(nib.load(TEMPLATE), 2.0, "linear")
    nib.save(head, tmp_path / "head.nii.gz")
    t0 = time.perf_counter()
    pp.make_brain_mask(tmp_path / "head.nii.gz", tmp_path / "mask.nii.gz", method="deepbet", mask_path=None,
                       dataset="demo", subject="template", device="cpu", amp=True)
    elapsed = time.perf_counter() - t0
    mask_img = nib.load(tmp_path / "mask.nii.gz")
    mask = np.asanyarray(mask_img.dataobj) > 0
    assert mask.shape == head.shape
    volume_ml = mask.sum() * abs(np.linalg.det(mask_img.affine[:3, :3])) / 1000
    assert 900 < volume_ml < 1800, volume_ml
    data = load_nifti(tmp_path / "head.nii.gz").get_fdata()
    head_mask = data > 0.1 * data.max()
    assert (data[mask] > 0.05 * data.max()).mean() > 0.99  # inside the head
    assert mask.sum() < 0.6 * head_mask.sum()  # the skull/scalp/face are excluded
    # the brain sits in the upper part of the head
    assert np.argwhere(mask)[:, 2].mean() > np.argwhere(head_mask)[:, 2].mean()
    print(f"deepbet on a {head.shape} 2 mm head: {elapsed:.1f} s, {volume_ml:.0f} ml")


class _Recorded(Exception):
    """Stops deepbet once the spy has recorded the autocast state (no network runs)."""


def test_deepbet_mask_autocasts_its_networks_only_when_asked(monkeypatch):
    """On any CPU (the hardware query patched to say bf16): deepbet's networks are entered under
    bf16 autocast with amp, and without autocast for fp32. The spy on ``BrainExtraction.run_model``
    (where both networks run) stops the run there, so no network runs (emulated bf16 takes minutes
    on a CPU without it; the mask check below needs bf16 hardware)."""
    from deepbet import BrainExtraction

    from itermask.io import device
    from itermask.preprocess.skullstrip import deepbet_mask

    seen: list[tuple[bool, torch.dtype]] = []

    def spy(self, *args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        raise _Recorded

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(BrainExtraction, "run_model", spy)
    head = resample_to_spacing(nib.load(TEMPLATE), 6.0, "linear")
    for amp in (True, False):
        with pytest.raises(_Recorded):
            deepbet_mask(head, device="cpu", amp=amp)
    assert seen[0] == (True, torch.bfloat16) and seen[1][0] is False and len(seen) == 2, seen


@pytest.mark.slow
@pytest.mark.skipif(autocast_dtype("cpu", True) is None,
                    reason="this CPU has no bf16 in hardware: deepbet runs fp32 here (emulated bf16: minutes)")
def test_deepbet_autocast_mask_matches_fp32(monkeypatch):
    """precision auto (bf16 forward passes on this CPU) against fp32 on the mean head at 3 mm: the same brain.

    A spy on deepbet's ``BrainExtraction.run_model`` (where both networks run) records the CPU
    autocast state at call time, so the test fails if skullstrip stops autocasting (amp=True
    would then run fp32 too and the Dice check alone could not tell)."""
    from deepbet import BrainExtraction

    from itermask.preprocess.skullstrip import deepbet_mask

    seen: list[tuple[bool, torch.dtype]] = []
    real_run_model = BrainExtraction.run_model

    def spy(self, *args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return real_run_model(self, *args, **kwargs)

    monkeypatch.setattr(BrainExtraction, "run_model", spy)
    head = resample_to_spacing(nib.load(TEMPLATE), 3.0, "linear")
    auto = deepbet_mask(head, device="cpu", amp=True)
    assert seen == [(True, torch.bfloat16)], seen  # the networks ran under bf16 autocast
    fp32 = deepbet_mask(head, device="cpu", amp=False)
    assert len(seen) == 2 and seen[1][0] is False, seen  # and without autocast for fp32
    assert 2.0 * np.count_nonzero(auto & fp32) / (np.count_nonzero(auto) + np.count_nonzero(fp32)) > 0.995  # 0.9998 on a demo head
