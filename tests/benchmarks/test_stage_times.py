"""benchmarks/stage_times.py: a run log gives the stage table; a missing log or a file that is not
a Snakemake run log is a one-line error with exit status 1 (no traceback, no empty table)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "stage_times.py"

LOG = """Building DAG of jobs...
[Sun Nov 22 00:47:02 2026]
localrule demo_data:
    jobid: 5
[Sun Nov 22 00:47:24 2026]
Finished jobid: 5 (Rule: demo_data)
"""


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_a_run_log_prints_the_stage_table(tmp_path):
    (tmp_path / "run.log").write_text(LOG)
    res = _run("run.log", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "| demo_data | 1 | 22 |" in res.stdout


def test_a_missing_log_is_a_one_line_error(tmp_path):
    res = _run("nope.log", cwd=tmp_path)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip() == "stage_times: nope.log: no such file"


def test_a_file_that_is_not_a_snakemake_log_is_a_one_line_error(tmp_path):
    (tmp_path / "notes.txt").write_text("just some text\nnot a log\n")
    res = _run("notes.txt", cwd=tmp_path)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "stage_times: notes.txt: no finished job in it (not a Snakemake run log, or a dry run)"]
