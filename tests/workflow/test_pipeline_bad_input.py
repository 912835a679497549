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
            "sequences": ["FLAIR"],
            "brain_mask": {"method": "stripped"},
            "splits": {"train": ["s1"], "test_healthy": ["s2"]},
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


def test_corrupt_and_nan_files_fail_clearly(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "sub-s1_FLAIR.nii.gz").write_bytes(b"not a nifti at all")
    data = np.ones((8, 8, 8), np.float32)
    data[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), raw / "sub-s2_FLAIR.nii.gz")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    targets = [f"results_tiny/preproc/ext/sub-{s}/native_brainmask.nii.gz" for s in ("s1", "s2")]
    res = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--configfile", str(_config(tmp_path)), "--cores", "1", "-k", *targets],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode != 0
    log1 = (tmp_path / "results_tiny/logs/brain_mask/ext_s1.log").read_text()
    assert "dataset 'ext', subject 's1', file" in log1 and "sub-s1_FLAIR.nii.gz" in log1 and "cannot read NIfTI" in log1
    log2 = (tmp_path / "results_tiny/logs/brain_mask/ext_s2.log").read_text()
    assert "subject 's2'" in log2 and "1 NaN/Inf voxels" in log2
    out_dir = tmp_path / "results_tiny/preproc/ext"
    leftovers = [p for p in out_dir.rglob("*") if p.is_file()] if out_dir.exists() else []
    assert leftovers == []
