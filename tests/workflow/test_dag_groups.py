"""Cluster groups (rules/common.smk cluster_group): formed where they act (a cluster executor, or
--group-components as the SLURM profile gives, also in its dry-runs); a plain local dry-run forms
none (local runs ignore groups, and forming them costs time quadratic in the subjects)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def _dry_run(tmp_path: Path, *args: str) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    res = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--configfile", str(ROOT / "tests/configs/tiny.yaml"),
         "--cores", "2", "-n", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _group_jobs(stdout: str) -> set[str]:
    return {line.split("Group job ")[1].split()[0] for line in stdout.splitlines() if "Group job " in line}


def test_local_dry_run_forms_no_groups(tmp_path):
    assert _group_jobs(_dry_run(tmp_path)) == set()


def test_group_components_form_the_subject_artefacts_and_inference_groups(tmp_path):
    """Three groups; the artefacts are not in the inference group (one subject's artefacts feed
    every detection experiment's inference: one group would chain them all into one job)."""
    out = _dry_run(tmp_path, "--group-components", "subject=2", "artefacts=2", "inference=4")
    assert _group_jobs(out) == {"subject", "artefacts", "inference"}
