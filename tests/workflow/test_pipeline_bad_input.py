"""Bad input through the real workflow: the job fails, the log names dataset, subject and
file, and no output (or temporary file) is left behind."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def _config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["demo"]["enabled"] = False
    cfg["datasets"] = {
        "ext": {
            "pattern": str(tmp_path / "raw/sub-{subject}_{sequence}.nii.gz"),
            "label_pattern": str(tmp_path / "raw/sub-{subject}_label.nii.gz"),
            "sequences": ["FLAIR"],
            "brain_mask": {"method": "stripped"},
            "splits": {"train": ["s1", "s3", "s5"], "val": ["s7"], "test_healthy": ["s2", "s4"], "test_lesion": ["s6"]},
        }
    }
    cfg["experiments"] = {"e": {"method": "itermask3d", "dataset": "ext", "sequence": "FLAIR", "segment": False}}
    cfg["tables"] = []
    cfg["sweeps"] = []
    cfg["artefacts"]["types"] = []
    cfg["artefacts"]["severity"] = {}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_bad_files_fail_their_subject_only(tmp_path):
    """One snakemake -k run: corrupt (s1), NaN voxels (s2), missing (s3), sheared affine (s4),
    a label on another grid (s6, rule preprocess_labelled__ext) and a good subject (s5), each one
    preprocessing job. Every problem fails the subject's input check, before any heavy stage (s3's
    missing file too: not a MissingInputException at DAG build); s5 finishes (its QC too); a
    failed job leaves no output."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "sub-s1_FLAIR.nii.gz").write_bytes(b"not a nifti at all")
    data = np.ones((8, 8, 8), np.float32)
    data[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), raw / "sub-s2_FLAIR.nii.gz")
    shear = np.eye(4)
    shear[0, 1] = 0.2
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), shear), raw / "sub-s4_FLAIR.nii.gz")
    good = np.random.default_rng(0).random((24, 24, 24)).astype(np.float32) + 1  # normalisable at 6 mm
    nib.save(nib.Nifti1Image(good, np.eye(4)), raw / "sub-s5_FLAIR.nii.gz")
    nib.save(nib.Nifti1Image(good, np.eye(4)), raw / "sub-s6_FLAIR.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((24, 24, 20), np.uint8), np.eye(4)), raw / "sub-s6_label.nii.gz")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    targets = [f"results_tiny/preproc/ext/sub-{s}/native_brainmask.nii.gz" for s in ("s1", "s2", "s3", "s4", "s5", "s6")]
    res = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--configfile", str(_config(tmp_path)), "--cores", "1", "-k", *targets],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode != 0
    assert "MissingInputException" not in res.stderr
    logs = tmp_path / "results_tiny/logs"
    log1 = (logs / "preprocess_subject/ext_s1.log").read_text()
    assert "dataset 'ext', subject 's1', file" in log1 and "sub-s1_FLAIR.nii.gz" in log1 and "cannot read NIfTI" in log1
    log2 = (logs / "preprocess_subject/ext_s2.log").read_text()
    assert "subject 's2'" in log2 and "sequence 'FLAIR' image: image contains 1 NaN/Inf voxels" in log2
    log3 = (logs / "preprocess_subject/ext_s3.log").read_text()
    assert "subject 's3'" in log3 and "sub-s3_FLAIR.nii.gz" in log3 and "file does not exist" in log3
    log4 = (logs / "preprocess_subject/ext_s4.log").read_text()
    assert "subject 's4'" in log4 and "affine has a shear of 11.31 degrees" in log4
    assert "inputs checked" not in log2 and "inputs checked" not in log4  # nothing heavy ran for s2, s4
    log6 = (logs / "preprocess_subject/ext_s6.log").read_text()
    assert "rule preprocess_labelled__ext" in log6 and "subject 's6'" in log6 and "sub-s6_label.nii.gz" in log6
    assert "label: on-disk shape (24, 24, 20) differs" in log6 and "inputs checked" not in log6
    out_dir = tmp_path / "results_tiny/preproc/ext"
    left = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    assert left == ["sub-s5/FLAIR.nii.gz", "sub-s5/FLAIR_hf-r15.nii.gz", "sub-s5/brainmask.nii.gz",
                    "sub-s5/inputs_checked.json", "sub-s5/native_brainmask.nii.gz"]
    qc = tmp_path / "results_tiny/qc/ext"
    assert sorted(p.name for p in qc.iterdir()) == ["sub-s5.json", "sub-s5.png", "sub-s5_skullstrip.png"]
