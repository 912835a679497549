"""Shared fixtures: one tiny end-to-end pipeline run per test session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests/configs/tiny.yaml"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def run_snakemake(workdir: Path, *args: str, timeout: int = 1500, configfile: Path = TINY) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--configfile", str(configfile), "--cores", "2", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("tiny")
    res = run_snakemake(workdir)
    if res.returncode != 0:
        logs = "\n".join(
            f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "results_tiny/logs").rglob("*.log"))
            if "Error" in p.read_text()
        )
        pytest.fail(f"pipeline failed:\n{res.stderr[-5000:]}\n{logs}")
    return workdir


