"""Synthetic artefacts: exact geometry, equality with direct TorchIO calls, determinism."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
import torchio as tio

from types import SimpleNamespace

from itermask.artefacts import algorithms, synthetic

art = SimpleNamespace(**{k: getattr(algorithms, k) for k in dir(algorithms) if not k.startswith("__")},
                      make_artefact=synthetic.make_artefact, make_artefacts=synthetic.make_artefacts)

torch.set_num_threads(1)


def _volume(shape=(24, 20, 18), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(np.float32)
    brain = np.zeros(shape, bool)
    brain[4:20, 3:17, 2:14] = True  # top of the brain at axial index 13
    x[~brain] = x[brain].min()
    return x, brain


def _tio(x):
    return tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(x.copy())[None], affine=np.eye(4)))


def test_chunk_top_slab_ends_at_top_of_brain():
    x, brain = _volume()
    out, rec = art.apply_artefact("chunk_top", x, brain, {"size": 5}, np.random.default_rng(0))
    vmin = x.min()
    changed = np.flatnonzero(np.any(out != x, axis=(0, 1)))
    assert rec["sampled"]["axial_range"] == [9, 14]
    assert np.all(out[:, :, 9:14] == vmin)
    assert set(changed) <= set(range(9, 14)) and 13 in changed
    np.testing.assert_array_equal(out[:, :, :9], x[:, :, :9])
    np.testing.assert_array_equal(out[:, :, 14:], x[:, :, 14:])


def test_chunk_middle_slab_exact():
    x, brain = _volume()
    out, _ = art.apply_artefact("chunk_middle", x, brain, {"size": 4, "start": 6}, np.random.default_rng(0))
    assert np.all(out[:, :, 6:10] == x.min())
    np.testing.assert_array_equal(np.delete(out, range(6, 10), axis=2), np.delete(x, range(6, 10), axis=2))


def test_kspace_noise_leaves_central_rows_and_dc_row():
    x, brain = _volume()
    rng = np.random.default_rng(3)
    clean, noisy = art.kspace_noise_spectra(x, 0.01, 2, rng)
    n = x.shape[0]
    diff = noisy - clean
    assert np.all(diff[n // 2 - 1 : n // 2 + 1] == 0)  # rows N/2-1 and N/2 untouched
    others = np.delete(diff, [n // 2 - 1, n // 2], axis=0)
    assert np.all(others != 0)
    # amplitude bound per slice: |Re noise| <= 0.01 * max|Re F| of that slice
    bound = 0.01 * np.abs(clean.real).max(axis=(0, 1))
    assert np.all(np.abs(others.real) <= bound + 1e-9)
    assert np.abs(others.real).max(axis=(0, 1)).min() > 0.5 * bound.min()
    out, _ = art.apply_artefact("kspace_noise", x, brain, {"amplitude": 0.01}, np.random.default_rng(3))
    spec_out = np.fft.fftshift(np.fft.fft2(out.astype(np.float64), axes=(0, 1)), axes=(0, 1))
    # the DC row is its own Hermitian mirror, so it survives taking the real part
    np.testing.assert_allclose(spec_out[n // 2], clean[n // 2], atol=1e-3)
    assert not np.allclose(out, x)


def test_zipper_columns_exact():
    x, brain = _volume()
    out, rec = art.apply_artefact("zipper", x, brain, {"columns": [2, 10], "width": 3}, np.random.default_rng(1))
    cols = [2, 3, 4, 10, 11, 12]
    assert rec["sampled"]["stripe_columns"] == cols
    np.testing.assert_array_equal(np.delete(out, cols, axis=1), np.delete(x, cols, axis=1))
    stripes = out[:, cols, :]
    lo, hi = x.min(axis=(0, 1)), x.max(axis=(0, 1))
    assert np.all(stripes >= lo - 1e-6) and np.all(stripes <= hi + 1e-6)
    varying = hi > lo  # slices with brain; background-only slices have a zero range
    assert varying.sum() == 12
    assert np.mean(stripes[..., varying] != x[:, cols, :][..., varying]) > 0.99
    np.testing.assert_array_equal(stripes[..., ~varying], x[:, cols, :][..., ~varying])


def test_spike_and_ghosting_equal_torchio():
    x, brain = _volume()
    out, _ = art.apply_artefact("spike", x, brain, {"positions": [[0.45, 0.45, 0.45]], "intensity": 4.0},
                                np.random.default_rng(0))
    ref = tio.Spike(spikes_positions=np.array([[0.45, 0.45, 0.45]]), intensity=4.0)(_tio(x))["image"].data[0].numpy()
    np.testing.assert_array_equal(out, ref)
    assert not np.allclose(out, x)
    out, _ = art.apply_artefact("ghosting-s1", x, brain, {"intensity": 1.0}, np.random.default_rng(0))
    ref = tio.Ghosting(num_ghosts=4, axis=1, intensity=1.0, restore=0.01)(_tio(x))["image"].data[0].numpy()
    np.testing.assert_array_equal(out, ref)


def test_bias_field_equals_torchio_with_same_seed():
    x, brain = _volume()
    out, rec = art.apply_artefact("bias_field", x, brain, {"coefficients": [0.05, 0.3], "order": 2},
                                  np.random.default_rng(5))
    torch.manual_seed(rec["torch_seed"])
    shift = float(x.min())
    ref = tio.RandomBiasField(coefficients=(0.05, 0.3), order=2)(_tio(x - shift))["image"].data[0].numpy() + shift
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
    coeffs = rec["sampled"]["torchio_history"][0]["arguments"]["coefficients"]["image"]
    assert len(coeffs) == 10 and all(0.05 <= c <= 0.3 for c in coeffs) and len(set(coeffs)) > 1
    # the recorded coefficients reproduce the output with the deterministic transform
    det = tio.BiasField(coefficients=coeffs, order=2)(_tio(x - shift))["image"].data[0].numpy() + shift
    np.testing.assert_allclose(out, det, atol=1e-5)


def test_motion_equals_torchio_with_same_seed():
    """RandomMotion(degrees, translation, num_transforms) drawn under torch.manual_seed(torch_seed),
    identity affine when none is given; the recorded draws replay with the deterministic Motion."""
    x, brain = _volume()
    params = {"degrees": 8.0, "translation": 6.0, "num_transforms": 2}
    out, rec = art.apply_artefact("motion", x, brain, params, np.random.default_rng(7))
    assert rec["torch_seed"] == int(np.random.default_rng(7).integers(0, 2**31))  # the seed's documented draw
    torch.manual_seed(rec["torch_seed"])
    ref = tio.RandomMotion(degrees=8.0, translation=6.0, num_transforms=2)(_tio(x))["image"].data[0].numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
    assert not np.allclose(out, x, atol=1e-3)
    args = rec["sampled"]["torchio_history"][0]["arguments"]
    degrees, translation, times = (args[k]["image"] for k in ("degrees", "translation", "times"))
    assert np.shape(degrees) == np.shape(translation) == (2, 3) and len(times) == 2
    assert np.all(np.abs(degrees) <= 8.0) and np.all(np.abs(translation) <= 6.0)
    det = tio.Motion(degrees=np.array(degrees), translation=np.array(translation), times=np.array(times),
                     image_interpolation="linear")(_tio(x))["image"].data[0].numpy()
    np.testing.assert_allclose(out, det, atol=1e-5)


def test_determinism_and_seed_dependence():
    x, brain = _volume()
    a, ra = art.apply_artefact("motion", x, brain, {"num_transforms": 1}, np.random.default_rng(7))
    b, rb = art.apply_artefact("motion", x, brain, {"num_transforms": 1}, np.random.default_rng(7))
    c, _ = art.apply_artefact("motion", x, brain, {"num_transforms": 1}, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert ra["sampled"] == rb["sampled"]
    assert not np.array_equal(a, c)
    k1, _ = art.apply_artefact("kspace_noise", x, brain, {}, np.random.default_rng(1))
    k2, _ = art.apply_artefact("kspace_noise", x, brain, {}, np.random.default_rng(1))
    np.testing.assert_array_equal(k1, k2)
    assert art.derive_seed(0, "d11", "ghosting") != art.derive_seed(0, "d12", "ghosting")


def test_derive_seed_pinned_values():
    """Pinned: artefact draws must stay the same across processes, platforms and versions, because
    resumed or re-run artefact stages rebuild their inputs from these seeds. Also the documented recipe
    (first 8 bytes of SHA-256 of "seed/subject/artefact", little-endian) recomputed here."""
    import hashlib

    assert art.derive_seed(0, "d11", "ghosting") == 16017694557915297155
    assert art.derive_seed(0, "d12", "ghosting") == 15731375112208132115
    digest = hashlib.sha256(b"3/sub-7/spike").digest()
    assert art.derive_seed(3, "sub-7", "spike") == int.from_bytes(digest[:8], "little")


def test_unknown_params_and_types_rejected():
    x, brain = _volume()
    with pytest.raises(ValueError, match=r"artefact 'spike' has no parameter 'intensty' \(known: \['intensity', "
                                         r"'positions'\]\)"):
        art.apply_artefact("spike", x, brain, {"intensty": 2}, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"unknown artefact type 'nonsense', expected one of \['chunk_top', "):
        art.apply_artefact("nonsense", x, brain, {}, np.random.default_rng(0))
    assert art.base_type("kspace_noise-s2") == "kspace_noise"


def test_other_sequence_is_the_other_volume_exactly():
    """``other_sequence``: the condition's volume is the subject's other sequence, unchanged."""
    x, brain = _volume()
    other = np.random.default_rng(9).normal(3.0, 2.0, size=x.shape).astype(np.float64)  # cast to float32
    out, rec = art.apply_artefact("other_sequence", x, brain, {}, np.random.default_rng(0), other=other)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, other.astype(np.float32))
    assert not np.shares_memory(out, other)
    assert rec["type"] == "other_sequence" and rec["params"] == {} and rec["sampled"] == {}
    assert rec["changed_fraction_in_brain"] == 1.0
    with pytest.raises(ValueError, match="artefact 'other_sequence' needs the other sequence's volume"):
        art.apply_artefact("other_sequence", x, brain, {}, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"other sequence shape \(24, 20, 17\) differs from the volume's "
                                         r"\(24, 20, 18\)"):
        art.apply_artefact("other_sequence", x, brain, {}, np.random.default_rng(0), other=other[:, :, :17])


def test_other_sequence_stage_reads_the_other_image(tmp_path):
    """The stage (`make_artefact`) loads ``other_image_path`` on the image's grid; without it, or
    on another grid, a clear InputError naming the subject."""
    from itermask.errors import InputError

    x, brain = _volume(shape=(12, 12, 12))
    other = np.random.default_rng(9).normal(size=x.shape).astype(np.float32)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    for name, arr, a in (("img", x, aff), ("other", other, aff), ("shifted", other, np.diag([3.0, 3.0, 3.0, 1.0])),
                         ("small", other[:, :, :10], aff)):
        nib.save(nib.Nifti1Image(arr, a), tmp_path / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), aff), tmp_path / "brain.nii.gz")

    def make(other_path, folder):
        outs = [tmp_path / folder / "other_sequence" / n for n in ("image.nii.gz", "hf.nii.gz", "params.json")]
        art.make_artefact(str(tmp_path / "img.nii.gz"), str(tmp_path / "brain.nii.gz"), *map(str, outs),
                          artefact="other_sequence", params={}, seed=0, hf_radius=3,
                          other_image_path=other_path, dataset="demo", subject="d11")
        return outs

    outs = make(str(tmp_path / "other.nii.gz"), "ok")
    np.testing.assert_array_equal(np.asarray(nib.load(outs[0]).dataobj), other)
    assert json.loads(outs[2].read_text())["inputs"]["other_image"] == str(tmp_path / "other.nii.gz")
    with pytest.raises(InputError, match="subject 'd11'.*artefact 'other_sequence' needs other_image_path"):
        make(None, "none")
    with pytest.raises(InputError, match=r"shifted\.nii\.gz': affine differs from its image's affine"):
        make(str(tmp_path / "shifted.nii.gz"), "shifted")
    with pytest.raises(InputError, match=r"small\.nii\.gz': shape \(12, 12, 10\) differs from its image's shape "
                                         r"\(12, 12, 12\)"):
        make(str(tmp_path / "small.nii.gz"), "small")
    assert not any((tmp_path / f).exists() for f in ("none", "shifted", "small"))  # nothing written


def test_make_artefact_stage(tmp_path):
    from itermask.core.highfreq import high_frequency

    x, brain = _volume(shape=(20, 20, 20))
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(x, aff), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), aff), tmp_path / "brain.nii.gz")
    outs = [tmp_path / "o" / n for n in ("image.nii.gz", "hf.nii.gz", "params.json")]
    kw = dict(artefact="spike-s0", params={"intensity": 1.0}, seed=0, hf_radius=3, other_image_path=None,
              dataset="demo", subject="d11")
    art.make_artefact(str(tmp_path / "img.nii.gz"), str(tmp_path / "brain.nii.gz"), *map(str, outs), **kw)
    out = np.asarray(nib.load(outs[0]).dataobj)
    hf = np.asarray(nib.load(outs[1]).dataobj)
    rec = json.loads(outs[2].read_text())
    ref = tio.Spike(spikes_positions=np.array([[0.45, 0.45, 0.45]]), intensity=1.0)(_tio(x))["image"].data[0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6)
    np.testing.assert_allclose(hf, high_frequency(out, radius=3), atol=1e-5)
    assert rec["type"] == "spike" and rec["params"]["intensity"] == 1.0
    assert rec["derived_seed"] == art.derive_seed(0, "d11", "spike")  # a severity level draws as its type
    assert rec["torchio_version"] == tio.__version__


def test_make_artefacts_stage_writes_each_condition_to_its_folder(tmp_path):
    """The rule's stage: each condition of ``specs`` goes to the outputs in its own folder, equal
    to ``make_artefact`` of that condition alone; outputs that do not match are refused."""
    x, brain = _volume(shape=(16, 16, 16))
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    img, bm = str(tmp_path / "img.nii.gz"), str(tmp_path / "brain.nii.gz")
    nib.save(nib.Nifti1Image(x, aff), img)
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), aff), bm)
    specs = {"spike": ("spike", {"intensity": 1.0}), "zipper": ("zipper", {"columns": [3, 9], "width": 1})}
    outs = {n: [tmp_path / "all" / n / f for f in ("image.nii.gz", "hf.nii.gz", "params.json")] for n in specs}
    kw = dict(seed=3, hf_radius=3, other_image_path=None, dataset="demo", subject="d11")
    logged = []
    art.make_artefacts(img, bm, specs, *([str(outs[n][k]) for n in specs] for k in range(3)),
                       log=lambda *a: logged.append(a[1]), **kw)
    assert logged == ["spike", "zipper"]
    for name, (kind, params) in specs.items():
        alone = [tmp_path / "alone" / name / f for f in ("image.nii.gz", "hf.nii.gz", "params.json")]
        art.make_artefact(img, bm, *map(str, alone), artefact=name, params=params, **kw)
        for a, b in zip(outs[name][:2], alone[:2]):
            np.testing.assert_array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj))
        assert json.loads(outs[name][2].read_text())["type"] == kind
    assert not np.array_equal(np.asarray(nib.load(outs["spike"][0]).dataobj),
                              np.asarray(nib.load(outs["zipper"][0]).dataobj))
    swapped = [[str(outs[n][k]) for n in ("zipper", "spike")] for k in range(3)]
    with pytest.raises(ValueError, match="is not the folder of artefact 'spike'"):
        art.make_artefacts(img, bm, specs, *swapped, **kw)
    with pytest.raises(ValueError, match="one image, HF and JSON output per artefact condition"):
        art.make_artefacts(img, bm, specs, [str(outs["spike"][0])], [str(outs["spike"][1])],
                           [str(outs["spike"][2])], **kw)


def test_severity_levels_share_their_types_random_draws(tmp_path):
    """A sweep varies one parameter (METHOD.md §2): k-space noise at two amplitudes is the same
    draw scaled, not two different noises."""
    x, brain = _volume(shape=(16, 16, 16))
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(x, aff), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), aff), tmp_path / "brain.nii.gz")
    diffs = []
    for k, amp in enumerate((0.003, 0.006)):
        outs = [tmp_path / f"s{k}" / n for n in ("image.nii.gz", "hf.nii.gz", "params.json")]
        art.make_artefact(str(tmp_path / "img.nii.gz"), str(tmp_path / "brain.nii.gz"), *map(str, outs),
                          artefact=f"kspace_noise-s{k}", params={"amplitude": amp}, seed=0, hf_radius=3,
                          other_image_path=None, dataset="demo", subject="d11")
        diffs.append(np.asarray(nib.load(outs[0]).dataobj, dtype=np.float64) - x)
    np.testing.assert_allclose(diffs[1], 2 * diffs[0], rtol=1e-4, atol=1e-5 * np.abs(diffs[1]).max())


# ----------------------------------------------------------------------------------------
# The reference parameters (METHOD.md §2), typed here as literals, and the defaults in use
# ----------------------------------------------------------------------------------------
METHOD_PARAMS = {
    "chunk_top": {"size": 30},
    "chunk_middle": {"size": 30, "start": 80},  # indices 80-110 (Python slice 80:110)
    "kspace_noise": {"amplitude": 0.003, "keep_center_rows": 2},
    "spike": {"positions": [[0.45, 0.45, 0.45]], "intensity": 4},
    "ghosting": {"num_ghosts": 4, "axis": 1, "intensity": 2.0, "restore": 0.01},
    "zipper": {"columns": [60, 90, 120], "width": 5},
}


def test_reference_params_match_method_md():
    for kind, want in METHOD_PARAMS.items():
        assert art.REFERENCE_PARAMS[kind] == want, kind
    bias = art.REFERENCE_PARAMS["bias_field"]
    assert set(bias) == {"coefficients", "order"} and bias["order"] == 3
    # (0.1, 0.1), written either as the pair or as the scalar the code widens to (c, c)
    assert bias["coefficients"] in (0.1, [0.1, 0.1], (0.1, 0.1))


def test_default_geometry_chunks_and_zipper():
    x = np.random.default_rng(4).normal(size=(4, 4, 120)).astype(np.float32)
    brain = np.zeros(x.shape, bool)
    brain[1:3, 1:3, 10:36] = True  # top of the brain at axial index 35
    out, rec = art.apply_artefact("chunk_top", x, brain, {}, np.random.default_rng(0))
    assert rec["sampled"]["axial_range"] == [6, 36]
    assert np.all(out[:, :, 6:36] == x.min())
    np.testing.assert_array_equal(np.delete(out, range(6, 36), axis=2), np.delete(x, range(6, 36), axis=2))
    out, rec = art.apply_artefact("chunk_middle", x, brain, {}, np.random.default_rng(0))
    assert rec["sampled"]["axial_range"] == [80, 110]
    assert np.all(out[:, :, 80:110] == x.min())
    np.testing.assert_array_equal(np.delete(out, range(80, 110), axis=2), np.delete(x, range(80, 110), axis=2))
    z = np.random.default_rng(5).normal(size=(3, 128, 2)).astype(np.float32)
    out, rec = art.apply_artefact("zipper", z, np.ones(z.shape, bool), {}, np.random.default_rng(1))
    cols = [*range(60, 65), *range(90, 95), *range(120, 125)]
    assert rec["sampled"]["stripe_columns"] == cols
    np.testing.assert_array_equal(np.delete(out, cols, axis=1), np.delete(z, cols, axis=1))
    assert np.all(out[:, cols] != z[:, cols])


def test_kspace_noise_bounds_real_and_imaginary_parts():
    """U(-A_re, A_re) + i U(-A_im, A_im), A = amplitude x the slice's largest |Re F| / |Im F|:
    both parts are bounded by their own maximum, and both reach near it."""
    x, brain = _volume()
    clean, noisy = art.kspace_noise_spectra(x, 0.003, 2, np.random.default_rng(3))
    n = x.shape[0]
    others = np.delete(noisy - clean, [n // 2 - 1, n // 2], axis=0)
    a_re = 0.003 * np.abs(clean.real).max(axis=(0, 1))
    a_im = 0.003 * np.abs(clean.imag).max(axis=(0, 1))
    assert np.all(a_im < 0.5 * a_re)  # the DC term makes |Re| larger: the two bounds differ
    live = a_im > 0  # background-only (constant) slices have no imaginary part, hence no Im noise
    assert live.sum() == 12
    for part, bound in ((others.real, a_re), (others.imag, a_im)):
        assert np.all(np.abs(part) <= bound * (1 + 1e-9))
        assert np.all(np.abs(part).max(axis=(0, 1))[live] > 0.5 * bound[live])
    # the default run: record and the same bounds on the spectrum of the (real) output
    out, rec = art.apply_artefact("kspace_noise", x, brain, {}, np.random.default_rng(3))
    assert rec["sampled"]["kept_rows"] == [n // 2 - 1, n // 2 + 1]
    diff = np.fft.fftshift(np.fft.fft2(out.astype(np.float64), axes=(0, 1)), axes=(0, 1)) - clean
    tol = 1e-4 * np.abs(clean).max()  # float32 rounding of the output
    np.testing.assert_allclose(diff[n // 2], 0, atol=tol)  # the DC row (its own mirror) is kept
    for part, bound in ((diff.real, a_re), (diff.imag, a_im)):
        assert np.all(np.abs(part) <= bound + tol)
        assert np.all(np.abs(part).max(axis=(0, 1))[live] > 0.5 * bound[live])


def test_torchio_artefacts_at_default_params_equal_direct_calls():
    x, brain = _volume()
    out, _ = art.apply_artefact("spike", x, brain, {}, np.random.default_rng(0))
    ref = tio.Spike(spikes_positions=np.array([[0.45, 0.45, 0.45]]), intensity=4)(_tio(x))["image"].data[0].numpy()
    np.testing.assert_array_equal(out, ref)
    out, _ = art.apply_artefact("ghosting", x, brain, {}, np.random.default_rng(0))
    ref = tio.Ghosting(num_ghosts=4, axis=1, intensity=2.0, restore=0.01)(_tio(x))["image"].data[0].numpy()
    np.testing.assert_array_equal(out, ref)


def test_bias_field_default_is_the_fixed_range_0p1_0p1_order_3():
    """Default parameters, incl. a scalar coefficient widened to (c, c): every coefficient is
    exactly c (TorchIO alone would read a scalar c as the range (-c, c))."""
    x, brain = _volume()
    out, rec = art.apply_artefact("bias_field", x, brain, {}, np.random.default_rng(5))
    coeffs = rec["sampled"]["torchio_history"][0]["arguments"]["coefficients"]["image"]
    assert len(coeffs) == 20  # order 3: (i, j, k) with i + j + k <= 3
    np.testing.assert_allclose(coeffs, 0.1, rtol=1e-6)
    torch.manual_seed(rec["torch_seed"])
    shift = float(x.min())
    ref = tio.RandomBiasField(coefficients=(0.1, 0.1), order=3)(_tio(x - shift))["image"].data[0].numpy() + shift
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
    assert not np.allclose(out, x, atol=1e-3)
    # an explicit scalar takes the same path
    _, rec2 = art.apply_artefact("bias_field", x, brain, {"coefficients": 0.2}, np.random.default_rng(6))
    np.testing.assert_allclose(rec2["sampled"]["torchio_history"][0]["arguments"]["coefficients"]["image"], 0.2,
                               rtol=1e-6)
