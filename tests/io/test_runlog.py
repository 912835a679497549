"""itermask.io.runlog: per-stage job times from a Snakemake log, on a constructed log."""
import pytest

from itermask.io.runlog import parse_run_log, stage_table

LOG = """Building DAG of jobs...
[Sun Nov 22 00:47:02 2026]
localrule demo_data:
    output: data/x.nii.gz
    jobid: 5
    reason: Missing output files
[Sun Nov 22 00:47:24 2026]
Finished jobid: 5 (Rule: demo_data)
1 of 4 steps (25%) done
[Sun Nov 22 00:47:24 2026]
rule brain_mask:
    input: data/x.nii.gz
    jobid: 49
    wildcards: dataset=demo, subject=d07
[Sun Nov 22 00:47:25 2026]
rule brain_mask:
    jobid: 50
[Sun Nov 22 00:47:32 2026]
Finished jobid: 49 (Rule: brain_mask)
[Sun Nov 22 00:47:45 2026]
Finished jobid: 50 (Rule: brain_mask)
[Sun Nov 22 00:47:46 2026]
localrule all:
    jobid: 0
[Sun Nov 22 00:47:46 2026]
Finished jobid: 0 (Rule: all)
"""


def test_job_times_by_rule():
    times = parse_run_log(LOG.splitlines())
    assert times.jobs == {"demo_data": [22.0], "brain_mask": [8.0, 20.0], "all": [0.0]}
    assert times.span_s == pytest.approx(44.0)
    assert times.job_seconds() == pytest.approx(50.0)


def test_unfinished_jobs_are_not_counted():
    lines = LOG.splitlines()
    cut = lines.index("Finished jobid: 50 (Rule: brain_mask)")
    times = parse_run_log(lines[:cut])
    assert times.jobs["brain_mask"] == [8.0]


def test_table_lists_slowest_stage_first():
    table = stage_table(parse_run_log(LOG.splitlines())).splitlines()
    assert table[2].startswith("| brain_mask | 2 | 28 | 14.0 | 20 |")
    assert table[3].startswith("| demo_data | 1 | 22 |")
    assert table[-1] == "| total | 4 | 50 | | |"


def test_loop_made_rules_count_under_their_stage():
    log = LOG.replace("localrule demo_data:", "rule infer__im3d_flair__demo__0:").replace(
        "(Rule: demo_data)", "(Rule: infer__im3d_flair__demo__0)")
    assert parse_run_log(log.splitlines()).jobs["infer"] == [22.0]
