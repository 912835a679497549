"""A tiny end-to-end run of the real pipeline (demo data -> deepbet -> ... -> tables)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TINY, run_snakemake

pytestmark = pytest.mark.slow


def test_outputs_of_every_stage(tiny_run):
    r = tiny_run / "results_tiny"
    qc = pd.read_csv(r / "qc/tiny_qc.tsv", sep="\t")
    assert len(qc) == 8
    img = nib.load(r / "preproc/tiny/sub-t06/FLAIR.nii.gz")
    assert img.shape == (32, 32, 32)
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    brain = np.asarray(nib.load(r / "preproc/tiny/sub-t06/brainmask.nii.gz").dataobj) > 0
    label = np.asarray(nib.load(r / "preproc/tiny/sub-t06/label.nii.gz").dataobj) > 0
    assert label.sum() > 0 and (label & ~brain).sum() <= 0.05 * label.sum()
    x = np.asarray(img.dataobj)
    assert abs(x[brain].mean()) < 0.5 and 0.5 < x[brain].std() < 1.5
    for cond in ("healthy", "ghosting", "ghosting-s1", "chunk_middle", "other_sequence"):
        d = r / f"inference/im3d/tiny/sub-t05/{cond}"
        result = json.loads((d / "result.json").read_text())
        assert np.isfinite(result["tau"])
        for f in ("recon.nii.gz", "error.nii.gz", "mask.nii.gz", "curve.png"):
            assert (d / f).exists(), d / f
    assert (r / "inference/im2/tiny/sub-t06/lesion/result.json").exists()
    # the labelled validation subject: segmented by every segmenting experiment, label beside it
    for exp in ("im3d", "im3d_fixed", "im2"):
        assert (r / f"inference/{exp}/tiny/sub-t08/val_lesion/label.nii.gz").exists(), exp


def test_sensitivity_figure(tiny_run):
    assert (tiny_run / "results_tiny/figures/sensitivity/im2_tau_percentile.png").stat().st_size > 1000


def test_tables_computed_without_nan(tiny_run):
    r = tiny_run / "results_tiny/tables"
    for name in ("detection", "segmentation", "segmentation_2d"):
        for ext in ("md", "csv", "tex"):
            assert (r / f"{name}.{ext}").stat().st_size > 0
        text = (r / f"{name}.md").read_text()
        assert "nan" not in text.lower()
    seg = pd.read_csv(tiny_run / "results_tiny/metrics/im3d/segmentation.tsv", sep="\t")
    assert set(seg["subject"]) == {"t06", "t07"}
    assert {"honest", "paper", "per_image_best"} <= set(seg["protocol"])
    assert seg["dice"].between(0, 1).all()
    honest = seg[seg["protocol"] == "honest"]  # its threshold came from t08 (tiny.yaml: labelled_val)
    assert set(honest["threshold_source"]) == {"labelled_val"} and honest["threshold"].nunique() == 1
    assert "labelled validation subjects" in (r / "segmentation.md").read_text()


def test_rerun_is_complete_and_resumes_after_deletion(tiny_run):
    res = run_snakemake(tiny_run, "-n")
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr
    (tiny_run / "results_tiny/metrics/im3d/segmentation.tsv").unlink()
    res = run_snakemake(tiny_run, "-n")
    planned = set(re.findall(r"^(?:local)?rule (\w+):", res.stdout, flags=re.M))
    assert "evaluate" in planned and "table" in planned
    assert not planned & {"train", "infer", "preprocess_subject__tiny", "demo_data"}, planned
    res = run_snakemake(tiny_run)  # restore for the tests that follow
    assert res.returncode == 0, res.stderr[-3000:]


def test_html_report(tiny_run):
    res = run_snakemake(tiny_run, "--report", "report.html", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    html = (tiny_run / "report.html").read_text(errors="ignore")
    assert "segmentation_2d" in html and "Quality control" in html


def test_training_learns_and_lesions_have_higher_error(tiny_run):
    r = tiny_run / "results_tiny"
    loss = pd.read_csv(r / "models/im3d/loss.tsv", sep="\t")
    first, last = loss["loss"].iloc[:5].mean(), loss["loss"].iloc[-5:].mean()
    assert last < 0.7 * first, (first, last)
    ratios = []
    for s in ("t06", "t07"):
        d = r / f"inference/im3d/tiny/sub-{s}/lesion"
        err = np.asarray(nib.load(d / "error.nii.gz").dataobj)
        lab = np.asarray(nib.load(d / "label.nii.gz").dataobj) > 0
        brain = np.asarray(nib.load(d / "brainmask.nii.gz").dataobj) > 0
        ratios.append(err[lab & brain].mean() / err[brain & ~lab].mean())
    assert min(ratios) > 1.0, ratios


def test_rules_for_a_non_default_hf_radius_run(tiny_run, tmp_path):
    """Rules high_frequency, slices2d and artefact_high_frequency (HF images and 2D slices at a
    radius other than preprocess.hf_radius / preprocess.slices2d.hf_radius, 15 in tiny.yaml) run
    for real on a copy of the tiny run with two hf_radius sweeps at 10, and write the known answers."""
    from itermask.core.highfreq import high_frequency

    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)  # the session's run stays as it is
    config = yaml.safe_load(TINY.read_text())
    config["sweeps"] = config["sweeps"] + [
        {"experiment": "im3d", "param": "hf_radius", "values": [10]},
        {"experiment": "im2", "param": "hf_radius", "values": [10]},
    ]
    configfile = tmp_path / "tiny_hf10.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    pre, art = "results_tiny/preproc/tiny/sub-t01", "results_tiny/artefacts/tiny/FLAIR/sub-t05/ghosting"
    targets = {  # t01: a training subject; t05: a healthy test subject with artefacts
        "high_frequency": f"{pre}/FLAIR_hf-r10.nii.gz",
        "slices2d": f"{pre}/FLAIR_slices2d-r10.npz",
        "artefact_high_frequency": f"{art}/image_hf-r10.nii.gz",
    }
    upstream = [work / f for f in (f"{pre}/FLAIR.nii.gz", f"{pre}/FLAIR_hf-r15.nii.gz",
                                   f"{pre}/FLAIR_slices2d-r15.npz", f"{art}/image.nii.gz")]
    mtimes = [p.stat().st_mtime_ns for p in upstream]
    args = (*targets.values(), "--rerun-triggers", "mtime")  # targets first: the option takes several values

    dry = run_snakemake(work, "-n", *args, timeout=600, configfile=configfile)
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = re.findall(r"^(?:local)?rule (\w+):\n(?:\s+\w+: .*\n)*?\s+output: (.+)$", dry.stdout, flags=re.M)
    assert sorted(planned) == sorted(targets.items()), planned  # one job each, nothing upstream

    res = run_snakemake(work, *args, timeout=600, configfile=configfile)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in upstream] == mtimes  # no upstream job reran

    def volume(rel: str) -> np.ndarray:
        return np.asarray(nib.load(work / rel).dataobj)

    for image, hf in ((f"{pre}/FLAIR.nii.gz", targets["high_frequency"]),
                      (f"{art}/image.nii.gz", targets["artefact_high_frequency"])):
        out = volume(hf)
        assert out.dtype == np.float32 and out.shape == (32, 32, 32)
        np.testing.assert_allclose(out, high_frequency(volume(image).astype(np.float32), radius=10), atol=1e-6)
    for r10, r15 in ((targets["high_frequency"], f"{pre}/FLAIR_hf-r15.nii.gz"),
                     (targets["artefact_high_frequency"], f"{art}/image_hf-r15.nii.gz")):
        assert not np.allclose(volume(r10), volume(r15), atol=1e-3), r10

    r10, r15 = np.load(work / targets["slices2d"]), np.load(work / f"{pre}/FLAIR_slices2d-r15.npz")
    assert set(r10.files) == set(r15.files)
    assert str(r10["role"]) == "train" and r10["image"].shape[0] > 0
    for key in set(r10.files) - {"hf"}:  # the same slices, geometry and masks
        np.testing.assert_array_equal(r10[key], r15[key], err_msg=key)
    # the HF channel: the 2D HF of each stored slice at radius 10 (torch, complex64, in the rule)
    expected = np.stack([high_frequency(s, radius=10) for s in r10["image"]])
    assert r10["hf"].dtype == np.float32
    np.testing.assert_allclose(r10["hf"], expected, atol=1e-5 * np.abs(expected).max())
    assert not np.allclose(r10["hf"], r15["hf"], atol=1e-3)


def test_multi_subject_preprocessing_jobs_write_the_same_files(tiny_run, tmp_path):
    """resources.preprocess_subjects_per_job 3: rules preprocess__tiny__<chunk> (3 jobs for the 8
    subjects) write every preprocessing and QC file byte for byte as the per-subject jobs did."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["resources"]["preprocess_subjects_per_job"] = 3
    config = tmp_path / "chunks.yaml"
    config.write_text(yaml.safe_dump(cfg))
    res = run_snakemake(tmp_path, "results_tiny/qc/tiny_qc.tsv", configfile=config)
    assert res.returncode == 0, res.stderr[-3000:]
    ran = re.findall(r"^(?:local)?rule (\w+):", res.stdout + res.stderr, flags=re.M)
    assert sorted(r for r in ran if r.startswith("preprocess")) == [f"preprocess__tiny__{k}" for k in range(3)]
    ours = sorted(p.relative_to(tmp_path) for d in ("preproc", "qc") for p in (tmp_path / "results_tiny" / d).rglob("*")
                  if p.is_file())
    assert len(ours) >= 8 * 10
    for f in ours:
        assert (tmp_path / f).read_bytes() == (tiny_run / f).read_bytes(), f
