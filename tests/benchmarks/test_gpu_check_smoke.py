"""benchmarks/gpu_check.py: the CPU smoke mode runs its checks and prints the comparison table;
without CUDA and without --smoke it says so and stops (status 2)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_smoke_mode_passes_its_checks_and_prints_the_table():
    res = _run("--smoke")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    for check in ("autocast float16 forward", "GradScaler training step", "device generators", "lockstep inference"):
        assert f"PASS  {check}" in out
    assert "skipped (--smoke)" in out  # the suite's CUDA tests and the pipeline are not part of the smoke
    assert ", 48^3," in out
    for row in ("forward", "training step", "full inference"):
        assert any(line.strip().startswith(row) and line.rstrip().endswith("x") for line in out.splitlines()), row
    assert "every check passed" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_the_full_check_says_so():
    res = _run()
    assert res.returncode == 2
    assert "no CUDA device" in res.stdout and "--smoke" in res.stdout
