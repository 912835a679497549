"""itermask.evaluation.scans: what a run's result.json says about its iterative mask; bad result
folders raise InputError naming the dataset, subject and file."""
from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from itermask.errors import InputError
from itermask.evaluation.scans import (Scan, convergence, inpainting_mask_fraction, input_image, load, load_on_grid,
                                       scan_scores, tau_at_first_point)


def _scan(**result):
    return Scan("demo", "s1", "lesion", Path("."), result)


@pytest.mark.parametrize("result, expected", [
    ({"converged": True, "iterations_b": 7, "max_iterations": 20}, (1.0, 7.0)),      # IterMask3D, converged
    ({"converged": False, "iterations_b": 20, "max_iterations": 20}, (0.0, 20.0)),   # stopped at the cap
    ({"converged": [True, True], "iterations": [4, 9], "max_iterations": 10}, (1.0, 9.0)),  # 2D: every slice
    ({"converged": [True, False], "iterations": [4, 10], "max_iterations": 10}, (0.0, 10.0)),
])
def test_convergence_of_iterative_runs(result, expected):
    assert convergence(_scan(**result)) == expected


@pytest.mark.parametrize("result", [
    {"kind": "3d"},                                                         # AE, DAE: no iterations
    {"converged": False, "iterations_b": 1, "max_iterations": 1},          # -spatial: one step
    {"converged": [], "iterations": [], "max_iterations": 10},             # 2D subject without slices
])
def test_convergence_is_undefined_without_iterations(result):
    assert all(math.isnan(v) for v in convergence(_scan(**result)))


@pytest.mark.parametrize("result, expected", [
    ({"threshold": "subject", "fit": {"k": 0, "fallback": None}}, 1.0),     # slope above gamma at once
    ({"threshold": "subject", "fit": {"k": 0, "fallback": "first"}}, 1.0),  # never above: the reference's fallback
    ({"threshold": "subject", "fit": {"k": 17, "fallback": None}}, 0.0),
])
def test_tau_at_first_point_of_subject_specific_taus(result, expected):
    assert tau_at_first_point(_scan(**result)) == expected


@pytest.mark.parametrize("result", [
    {"threshold": "fixed", "fit": {"k": 0}},  # a fixed tau (phase A only recorded)
    {"threshold": "subject", "fit": None},    # -spatial: no curve
    {},                                       # a baseline
])
def test_tau_at_first_point_is_undefined_without_a_subject_tau(result):
    assert math.isnan(tau_at_first_point(_scan(**result)))


def test_inpainting_mask_fraction_of_the_diffusion_baselines():
    assert inpainting_mask_fraction(_scan(mean_mask_fraction=0.78)) == 0.78             # AutoDDPM
    assert inpainting_mask_fraction(_scan(mean_initial_mask_fraction=0.4)) == 0.4       # DDPM
    assert math.isnan(inpainting_mask_fraction(_scan(kind="3d")))                       # other methods
    assert math.isnan(inpainting_mask_fraction(_scan(mean_mask_fraction=None)))         # no slices


# ----------------------------------------------------------------------------- bad result folders
def _folder_scan(tmp_path: Path, **result) -> Scan:
    folder = tmp_path / "lesion"
    folder.mkdir(exist_ok=True)
    return Scan("ds", "s7", "lesion", folder, result)


def _save(path: Path, arr: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(arr, np.float32), np.eye(4)), path)
    return path


def _names_the_scan(err: InputError, path: Path) -> None:
    assert err.dataset == "ds" and err.subject == "s7" and err.path == str(path)


def test_a_result_without_a_score_is_an_error_not_a_missing_roc_point(tmp_path):
    for result in ({"kind": "3d", "scores": {"mean_error": 0.1}}, {"kind": "3d", "score": None}):
        scan = _folder_scan(tmp_path, **result)
        with pytest.raises(InputError, match="no finite 'score'") as err:
            scan_scores(scan)
        _names_the_scan(err.value, scan.folder / "result.json")


def test_a_left_out_subject_has_no_score_by_design():
    assert scan_scores(_scan(kind="2d", slices=[], left_out_reason="no lesion in the central slices")) == {}


def test_a_corrupt_nifti_names_the_scan_and_file(tmp_path):
    scan = _folder_scan(tmp_path, kind="3d")
    (scan.folder / "error.nii.gz").write_bytes(b"not a nifti at all")
    with pytest.raises(InputError, match="cannot read NIfTI") as err:
        load(scan, "error.nii.gz")
    _names_the_scan(err.value, scan.folder / "error.nii.gz")


def test_a_file_off_the_error_maps_grid_names_both_shapes(tmp_path):
    scan = _folder_scan(tmp_path, kind="3d")
    _save(scan.folder / "label.nii.gz", np.zeros((4, 4, 3)))
    with pytest.raises(InputError, match=r"shape \(4, 4, 3\) differs from the error map's shape \(4, 4, 2\)") as err:
        load_on_grid(scan, "label.nii.gz", (4, 4, 2))
    _names_the_scan(err.value, scan.folder / "label.nii.gz")


def test_input_image_comes_from_the_record(tmp_path):
    image = _save(tmp_path / "t1.nii.gz", np.ones((4, 4, 2)))
    scan = _folder_scan(tmp_path, kind="3d", inputs={"image": str(image)})
    assert input_image(scan, (4, 4, 2)).shape == (4, 4, 2)
    assert input_image(_folder_scan(tmp_path, kind="3d"), (4, 4, 2)) is None  # the record names no input


@pytest.mark.parametrize("case", ["missing", "corrupt", "off_grid", "slicewise_without_input2d"])
def test_an_input_image_the_record_names_must_be_readable_on_the_grid(tmp_path, case):
    image = tmp_path / "t1.nii.gz"
    result = {"kind": "3d", "inputs": {"image": str(image)}}
    expected = image
    if case == "corrupt":
        image.write_bytes(b"garbage")
    elif case == "off_grid":
        _save(image, np.ones((4, 4, 3)))
    elif case == "slicewise_without_input2d":  # the z-scored volume is in other units: never a stand-in
        _save(image, np.ones((4, 4, 2)))
        result["kind"] = "slicewise"
        expected = tmp_path / "lesion" / "input2d.nii.gz"
    scan = _folder_scan(tmp_path, **result)
    with pytest.raises(InputError) as err:
        input_image(scan, (4, 4, 2))
    _names_the_scan(err.value, expected)


@pytest.mark.parametrize("case", ["corrupt", "lacks_slices"])
def test_a_bad_slices_file_names_it(tmp_path, case):
    npz = tmp_path / "sub-s7_slices2d-r3.npz"
    if case == "corrupt":
        npz.write_bytes(b"garbage")
    else:
        np.savez(npz, image=np.ones((2, 4, 4), np.float32), index=np.array([10, 11]))
    scan = _folder_scan(tmp_path, kind="2d", slices=[11, 12], inputs={"slices": str(npz)})
    with pytest.raises(InputError, match="cannot read slices file" if case == "corrupt" else r"lacks .*\[12\]") as err:
        input_image(scan, (4, 4, 2))
    _names_the_scan(err.value, npz)
