"""benchmarks/infer_memory.py runs each case in a child process and prints one row per case."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "infer_memory.py"
spec = importlib.util.spec_from_file_location("infer_memory", SCRIPT)
infer_memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(infer_memory)


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_small_case_prints_its_precision_and_a_row(capsys, monkeypatch, precision):
    monkeypatch.setenv("THREADS", "1")
    infer_memory.main(["--size", "32", "--subjects", "1", "--step", "50", "--precision", precision])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("forward passes: ") and out[0].endswith(f"(precision {precision})")
    if precision == "fp32":
        assert out[0].startswith("forward passes: fp32")
    size, subjects, peak, baseline, per_subject, seconds = out[-1].split()
    assert (size, subjects) == ("32", "1")
    assert float(peak) >= float(baseline) > 0 and float(seconds) > 0
    assert re.fullmatch(r"-?\d+\.\d\d", per_subject)
