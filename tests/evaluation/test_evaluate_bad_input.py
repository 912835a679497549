"""evaluate_experiment on bad result folders: InputError naming the experiment, dataset, subject
and file, never a table cell computed on less data (a dropped subject, a NaN PSNR)."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from itermask.errors import ConfigError, InputError
from itermask.evaluation.evaluate import evaluate_experiment

SHAPE = (10, 10, 8)


def _brain_label():
    brain = np.zeros(SHAPE, bool)
    brain[1:9, 1:9, 1:7] = True
    label = np.zeros(SHAPE, bool)
    label[4:6, 4:6, 2:5] = True
    return brain, label


def _condition(folder: Path, *, label=True, lesion=True, drop=(), files=None, result=None) -> Path:
    """One condition folder as inference writes it (input image in the folder)."""
    folder.mkdir(parents=True)
    brain, lab = _brain_label()
    lab = lab if lesion else np.zeros(SHAPE, bool)
    err = np.where(brain, np.where(lab, 1.0, 0.1), 0.0)
    image = 1.0 + np.arange(np.prod(SHAPE)).reshape(SHAPE) / 100
    arrays = {"image.nii.gz": image, "recon.nii.gz": image - err, "error.nii.gz": err,
              "brainmask.nii.gz": brain, "mask.nii.gz": err > 0.5, **({"label.nii.gz": lab} if label else {}),
              **(files or {})}
    for name, a in arrays.items():
        if name not in drop:
            nib.save(nib.Nifti1Image(np.asarray(a, np.float32), np.eye(4)), folder / name)
    record = {"kind": "3d", "score_name": "mask_size", "score": float((err > 0.5).sum()), "tau": 0.5, **(result or {})}
    (folder / "result.json").write_text(json.dumps(record))
    return folder


def _evaluate(tmp: Path, runs, protocols=("paper",), honest_source="healthy_fpr", honest_fpr=0.05) -> None:
    out = [str(tmp / n) for n in ("s.tsv", "d.tsv", "c.tsv")]
    evaluate_experiment("exp", runs, *out, protocols=list(protocols), honest_source=honest_source, honest_fpr=honest_fpr,
                        size_bins=[4, 20], pooled_anomalies=[])


def _names(err: InputError, dataset: str, subject: str | None, path: Path | None) -> None:
    assert err.dataset == dataset and err.subject == subject
    assert err.path == (None if path is None else str(path))


def test_a_lesion_subject_without_its_label_is_an_error(tmp_path):
    _condition(tmp_path / "a" / "lesion")
    folder = _condition(tmp_path / "b" / "lesion", label=False)
    with pytest.raises(InputError, match="no label.nii.gz") as err:
        _evaluate(tmp_path, [("ds", "a", tmp_path / "a"), ("ds", "b", tmp_path / "b")])
    _names(err.value, "ds", "b", folder / "label.nii.gz")


def test_unlabelled_healthy_and_left_out_scans_need_no_label(tmp_path):
    _condition(tmp_path / "a" / "lesion")
    _condition(tmp_path / "a" / "healthy", label=False, result={"score": 1.0})
    gone = tmp_path / "b" / "lesion"
    gone.mkdir(parents=True)
    (gone / "result.json").write_text(json.dumps({"kind": "2d", "slices": [], "left_out_reason": "no slice"}))
    _evaluate(tmp_path, [("ds", "a", tmp_path / "a"), ("ds", "b", tmp_path / "b")])
    seg = pd.read_csv(tmp_path / "s.tsv", sep="\t")
    assert seg[["subject", "protocol"]].values.tolist() == [["b", "left_out"], ["a", "paper"], ["a", "iterative_mask"]]
    assert seg.loc[seg["subject"] == "a", ["psnr", "ssim"]].notna().all().all()


@pytest.mark.parametrize("name, shape", [("label.nii.gz", (10, 10, 9)), ("recon.nii.gz", (10, 9, 8)),
                                         ("mask.nii.gz", (10, 10, 7))])
def test_a_file_off_the_error_maps_grid_names_it_and_both_shapes(tmp_path, name, shape):
    folder = _condition(tmp_path / "a" / "lesion", files={name: np.zeros(shape)})
    with pytest.raises(InputError) as err:
        _evaluate(tmp_path, [("ds", "a", tmp_path / "a")])
    assert f"shape {shape} differs from the" in err.value.problem and f"shape {SHAPE}" in err.value.problem
    _names(err.value, "ds", "a", folder / name)


def test_a_record_without_an_input_image_is_an_error_not_a_nan_psnr(tmp_path):
    folder = _condition(tmp_path / "a" / "lesion", drop=("image.nii.gz",))
    with pytest.raises(InputError, match="names no input image") as err:
        _evaluate(tmp_path, [("ds", "a", tmp_path / "a")])
    _names(err.value, "ds", "a", folder / "result.json")


def test_a_missing_input_image_the_record_names_is_an_error(tmp_path):
    gone = tmp_path / "gone_T1w.nii.gz"
    _condition(tmp_path / "a" / "lesion", drop=("image.nii.gz",), result={"inputs": {"image": str(gone)}})
    with pytest.raises(InputError, match="input image .* not found") as err:
        _evaluate(tmp_path, [("ds", "a", tmp_path / "a")])
    _names(err.value, "ds", "a", gone)


def test_a_corrupt_result_array_names_the_file(tmp_path):
    folder = _condition(tmp_path / "a" / "lesion")
    (folder / "recon.nii.gz").write_bytes(b"\x1f\x8b broken gzip")
    with pytest.raises(InputError, match="cannot read NIfTI") as err:
        _evaluate(tmp_path, [("ds", "a", tmp_path / "a")])
    _names(err.value, "ds", "a", folder / "recon.nii.gz")


def test_a_detection_scan_without_a_score_is_an_error(tmp_path):
    _condition(tmp_path / "a" / "lesion")
    folder = _condition(tmp_path / "a" / "healthy", label=False, result={"score": None})
    with pytest.raises(InputError, match="no finite 'score'") as err:
        _evaluate(tmp_path, [("ds", "a", tmp_path / "a")])
    _names(err.value, "ds", "a", folder / "result.json")


def test_paper_threshold_without_lesion_voxels_names_experiment_and_dataset(tmp_path):
    _condition(tmp_path / "a" / "lesion", lesion=False)
    with pytest.raises(InputError, match="experiment 'exp': protocol 'paper'.*no lesion voxels") as err:
        _evaluate(tmp_path, [("ds", "a", tmp_path / "a")])
    _names(err.value, "ds", None, None)


def test_labelled_honest_threshold_without_lesion_voxels_names_experiment_and_dataset(tmp_path):
    _condition(tmp_path / "a" / "lesion")
    _condition(tmp_path / "v" / "val_lesion", lesion=False)
    with pytest.raises(InputError, match="experiment 'exp': honest threshold .*val_lesion.*no lesion voxels") as err:
        _evaluate(tmp_path, [("ds", "a", tmp_path / "a"), ("ds", "v", tmp_path / "v")], protocols=["honest"],
                  honest_source="labelled_val")
    _names(err.value, "ds", None, None)


def test_honest_threshold_from_empty_validation_brains_names_experiment_and_dataset(tmp_path):
    _condition(tmp_path / "a" / "lesion")
    _condition(tmp_path / "v" / "val", label=False, files={"brainmask.nii.gz": np.zeros(SHAPE)})
    with pytest.raises(InputError, match="experiment 'exp': no healthy validation voxels") as err:
        _evaluate(tmp_path, [("ds", "a", tmp_path / "a"), ("train_ds", "v", tmp_path / "v")], protocols=["honest"])
    _names(err.value, "train_ds", None, None)


def test_per_image_best_on_an_empty_brain_names_the_subject(tmp_path):
    folder = _condition(tmp_path / "a" / "lesion", files={"brainmask.nii.gz": np.zeros(SHAPE)})
    with pytest.raises(InputError, match="experiment 'exp': protocol 'per_image_best': empty brain") as err:
        _evaluate(tmp_path, [("ds", "a", tmp_path / "a")], protocols=["per_image_best"])
    _names(err.value, "ds", "a", folder / "brainmask.nii.gz")


def test_an_honest_fpr_outside_0_1_is_a_config_error_naming_the_experiment(tmp_path):
    _condition(tmp_path / "a" / "lesion")
    _condition(tmp_path / "v" / "val", label=False)
    with pytest.raises(ConfigError, match="experiment 'exp': evaluation.honest_fpr"):
        _evaluate(tmp_path, [("ds", "a", tmp_path / "a"), ("ds", "v", tmp_path / "v")], protocols=["honest"],
                  honest_fpr=1.5)


def test_a_left_out_labelled_validation_scan_needs_no_label(tmp_path):
    _condition(tmp_path / "a" / "lesion")
    _condition(tmp_path / "v" / "val_lesion")
    gone = tmp_path / "w" / "val_lesion"
    gone.mkdir(parents=True)
    (gone / "result.json").write_text(json.dumps({"kind": "2d", "slices": [], "left_out_reason": "no slice"}))
    runs = [("ds", "a", tmp_path / "a"), ("ds", "v", tmp_path / "v"), ("ds", "w", tmp_path / "w")]
    _evaluate(tmp_path, runs, protocols=["honest"], honest_source="labelled_val")
    seg = pd.read_csv(tmp_path / "s.tsv", sep="\t")
    assert set(seg.loc[seg["protocol"] == "honest", "threshold_source"]) == {"labelled_val"}
