"""Planning cost (issue 13, item 3): Snakemake builds each job of a dry-run once. A file that two
rules can make (an HF image at preprocess.hf_radius: preprocess_subject or high_frequency; a synthetic
artefact's: artefacts or artefact_high_frequency) used to cost a second, discarded job per file
(its inputs, params and resources worked out) before the ruleorder chose; the HF rules now only
match other radii (rules/common.smk OTHER_RADIUS) and still make those, as rule slices2d matches
only radii other than preprocess.slices2d.hf_radius. A subject's preprocessing job comes from one
of two rules per dataset, whose subject constraints do not overlap (with and without a label)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

# Counts the Job objects Snakemake builds and records the jobs a dry-run lists.
RUNNER = """
import json, sys
from snakemake import jobs
from snakemake.cli import main
from snakemake.executors import dryrun
built, listed = [0], []
init = jobs.Job.__init__
def counting_init(self, *args, **kwargs):
    built[0] += 1
    init(self, *args, **kwargs)
jobs.Job.__init__ = counting_init
printjob = dryrun.Executor.printjob
def recording_printjob(self, job):
    listed.append([job.rule.name, [str(f) for f in job.output]])
    return printjob(self, job)
dryrun.Executor.printjob = recording_printjob
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "built": built[0], "jobs": listed}))
"""


def _plan(tmp_path: Path, config: dict) -> dict:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    res = subprocess.run(
        [sys.executable, "-c", RUNNER, "-s", str(ROOT / "Snakefile"), "--configfile", str(cfg), "--cores", "2",
         "-n", "--quiet", "all"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["code"] == 0, res.stderr[-3000:]
    return out


def test_each_job_is_built_once_and_hf_images_come_from_their_rules(tmp_path):
    config = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    # + experiments at another HF radius: their HF images (clean and artefact) and slices need the
    # HF and slice rules
    config["experiments"]["im3d_r10"] = {**config["experiments"]["im3d"], "hf_radius": 10}
    config["experiments"]["im2_r10"] = {**config["experiments"]["im2"], "hf_radius": 10}
    out = _plan(tmp_path, config)
    assert out["built"] == len(out["jobs"])  # no candidate job built and then dropped
    maker = {f: rule for rule, outputs in out["jobs"] for f in outputs}
    hf = {f: rule for f, rule in maker.items() if "_hf-r" in f}
    preprocess = {"preprocess_subject__tiny", "preprocess_labelled__tiny"}  # t06, t07 have labels
    assert {rule for f, rule in hf.items() if "_hf-r15." in f} == preprocess | {"artefacts"}
    assert {rule for f, rule in hf.items() if "_hf-r10." in f} == {"high_frequency", "artefact_high_frequency"}
    slices = {f: rule for f, rule in maker.items() if "_slices2d-r" in f}
    assert {rule for f, rule in slices.items() if "-r15." in f} == preprocess
    assert {rule for f, rule in slices.items() if "-r10." in f} == {"slices2d"}
    assert maker["results_tiny/preproc/tiny/sub-t06/label.nii.gz"] == "preprocess_labelled__tiny"
    assert maker["results_tiny/preproc/tiny/sub-t05/FLAIR.nii.gz"] == "preprocess_subject__tiny"
