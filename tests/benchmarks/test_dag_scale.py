"""benchmarks/dag_scale.py builds a study of N zero-byte subjects that the pipeline's Study reads."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from itermask.config.study import Study

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "dag_scale.py"
spec = importlib.util.spec_from_file_location("dag_scale", SCRIPT)
dag_scale = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dag_scale)


def test_splits_cut_n_subjects_70_10_10_10():
    splits = dag_scale.split_subjects(20)
    assert {k: len(v) for k, v in splits.items()} == {"train": 14, "val": 2, "test_healthy": 2, "test_lesion": 2}
    assert sum(splits.values(), []) == [f"s{i:05d}" for i in range(1, 21)]


def test_study_of_n_subjects(tmp_path):
    config = yaml.safe_load(dag_scale.write_study(tmp_path, 20).read_text())
    study = Study(config, base_dir=tmp_path)
    d = study.datasets["big"]
    assert len(d.subjects) == 20 and d.sequences == ("T1w", "FLAIR")
    lesion = study.datasets["big"].splits["test_lesion"][0]
    assert Path(d.label(lesion)).exists() and Path(d.image(lesion, "FLAIR")).stat().st_size == 0
    assert {study.settings(e).method for e in study.experiments} == {"itermask3d", "itermask2"}
    assert study.conditions("im3d", "big", d.splits["test_healthy"][0]) == ["healthy", "chunk_middle", "ghosting"]


def test_job_count_reads_the_total_line():
    assert dag_scale.job_count("job   count\n-----  -----\ninfer  5\ntotal     668\n") == 668
    assert dag_scale.job_count("nothing to be done") is None


def _rule_counts(stdout: str) -> dict[str, int]:
    """Jobs per rule of Snakemake's job-count table; rules made in a loop (``name__<dataset>``,
    ``infer__<experiment>__...``) count under their stem, as the bare rules name them."""
    counts: dict[str, int] = {}
    for r in (line.split() for line in stdout.splitlines()):
        if len(r) == 2 and r[1].isdigit():
            stem = r[0].split("__")[0]
            counts[stem] = counts.get(stem, 0) + int(r[1])
            if stem == "total":  # the first table (a dry-run prints it twice)
                return counts
    return counts


def test_bare_rules_plan_the_pipelines_jobs(tmp_path):
    """--bare (benchmarks/dag_floor.smk) plans as many jobs of each rule as the pipeline does."""
    config = dag_scale.write_study(tmp_path, 20)
    *_, pipeline = dag_scale.dry_run(tmp_path, config)
    *_, bare = dag_scale.dry_run(tmp_path, config, dag_scale.BARE)
    counts = _rule_counts(bare)
    assert counts == _rule_counts(pipeline)
    # one preprocessing job per subject: the 2 lesioned subjects' labelled rule, the others' own
    assert (counts["preprocess_subject"], counts["preprocess_labelled"]) == (18, 2)


def test_one_job_plans_that_job_alone(tmp_path):
    """The per-job column plans exactly the one preprocessing job a cluster job runs, in both workflows."""
    config = dag_scale.write_study(tmp_path, 20)
    for snakefile, bare in ((dag_scale.ROOT / "Snakefile", False), (dag_scale.BARE, True)):
        *_, jobs, out = dag_scale.dry_run(tmp_path, config, snakefile, dag_scale.one_job(20, bare))
        assert jobs == 1 and _rule_counts(out)["preprocess_subject"] == 1
