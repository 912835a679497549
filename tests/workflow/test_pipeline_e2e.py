"""A tiny end-to-end run of the real pipeline (demo data -> deepbet -> ... -> tables)."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import run_snakemake

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
