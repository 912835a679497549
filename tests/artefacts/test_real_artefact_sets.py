"""Real-artefact sets in the study and the DAG: the failed-skull-stripping set (derived dataset,
candidates, condition) and a user's own anomalous dataset (split test_anomalous + anomaly)."""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from itermask.config.study import Study
from itermask.errors import ConfigError, UnknownName

ROOT = Path(__file__).resolve().parents[2]


def _config(**fss) -> dict:
    cfg = {
        "results_dir": "res", "seed": 0,
        "datasets": {
            "adni": {"pattern": "adni/{subject}_{sequence}.nii.gz", "sequences": ["FLAIR", "T1w"],
                     "brain_mask": {"method": "deepbet", "sequence": "T1w"},
                     "splits": {"train": ["a1"], "val": ["a2"], "test_healthy": ["a3", "a4", "a5"]},
                     "failed_skullstrip_set": {"enabled": True, **fss}},
            "metal": {"pattern": "metal/{subject}_{sequence}.nii.gz", "sequences": ["FLAIR"],
                      "brain_mask": {"method": "deepbet"}, "splits": {"test_anomalous": ["m1", "m2"]},
                      "anomaly": "metallic_susceptibility"},
        },
        "preprocess": {"spacing_mm": 1.0, "box": [32, 32, 32]},
        "artefacts": {"types": ["spike"], "other_sequence": "T1w"},
        "experiments": {"e": {"method": "itermask3d", "dataset": "adni", "sequence": "FLAIR",
                              "train": {"steps": 1}, "detect": ["adni", "metal"]}},
    }
    return cfg


def test_failed_strip_dataset_and_candidates():
    study = Study(_config(n_subjects=2))
    d = study.datasets["adnifailedstrip"]
    assert study.failed_strip_dataset("adni") == "adnifailedstrip" and study.failed_strip_dataset("metal") is None
    assert d.subjects == ["a3", "a4", "a5"] and d.mask_method == "pattern" and d.label("a3") is None
    assert d.mask_file("a3") == "res/failed_skullstrip/adni/sub-a3/outlier_brainmask.nii.gz"
    assert d.image("a3", "FLAIR") == study.datasets["adni"].image("a3", "FLAIR")  # the same raw scans
    assert study.failed_strip_candidate("e", "adni", "a4") and not study.failed_strip_candidate("e", "adni", "a1")
    s = study.failed_skullstrip("adni")
    assert (s.n_subjects, s.subjects, s.hd_bet_mode, s.hd_bet_tta, s.template_spacing_mm) == (2, None, "accurate", True, 3.0)
    study = Study(_config(subjects=["a5"]))
    assert study.failed_strip_candidates("adni") == ("a5",)
    assert study.datasets["adnifailedstrip"].subjects == ["a5"]


def test_failed_strip_lookups_name_an_unknown_or_setless_dataset():
    study = Study(_config())
    for lookup in (study.failed_skullstrip, study.failed_strip_candidates):
        with pytest.raises(UnknownName, match="unknown dataset 'adnii'.*adni"):
            lookup("adnii")
    with pytest.raises(ConfigError, match="dataset 'metal' has no failed skull-stripping set"):
        study.failed_strip_candidates("metal")


def test_anomalous_dataset_conditions():
    study = Study(_config())
    assert study.conditions("e", "metal", "m1") == ["metallic_susceptibility"]
    assert study.conditions("e", "adni", "a3") == ["healthy", "spike"]  # failed_skullstrip: when selected
    assert ("metal", "m2") in study.inference_subjects("e")
    assert all(d != "adnifailedstrip" for d, _ in study.inference_subjects("e"))
    cfg = _config()
    cfg["experiments"]["e"]["detect"] = ["adni"]
    assert all(d != "metal" for d, _ in Study(cfg).inference_subjects("e"))


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["datasets"]["adni"].update(brain_mask={"method": "stripped"}), "brain_mask.method 'deepbet'"),
    (lambda c: c["datasets"]["adni"]["failed_skullstrip_set"].update(subjects=["a1"]), "test_healthy subjects"),
    (lambda c: c["datasets"]["metal"].pop("anomaly"), "give 'anomaly'"),
    (lambda c: c["datasets"]["metal"].update(anomaly="spike"), "reserved"),
    (lambda c: c["datasets"]["metal"].update(anomaly="failed_skullstrip"), "reserved"),
    (lambda c: c["experiments"]["e"].update(detect=["metal"], dataset="adni"), "healthy test scans"),
    (lambda c: c["datasets"].update(adnifailedstrip=copy.deepcopy(c["datasets"]["metal"])), "already names"),
])
def test_config_errors(edit, message):
    cfg = _config()
    edit(cfg)
    with pytest.raises(ConfigError, match=message):
        Study(cfg)


def test_anomaly_name_must_be_a_folder_name():
    cfg = _config()
    cfg["datasets"]["metal"]["anomaly"] = "Metal Artefact"
    with pytest.raises(ConfigError, match="anomaly"):
        Study(cfg)


def _dry_run(tmp_path: Path, cfg: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    return subprocess.run(
        [str(bin_dir / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile", str(path),
         "-n", "--cores", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _rule_blocks(stdout: str, rule: str) -> list[str]:
    """The dry-run's job blocks of one rule (jobs of a group are printed indented)."""
    return [b for b in re.split(r"\n\s*rule ", stdout)[1:] if b.startswith(f"{rule}:")]


def test_dry_run_builds_the_sets_and_feeds_inference(tmp_path):
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    tiny = cfg["datasets"]["tiny"]
    tiny["splits"]["test_healthy"] = ["t05", "t09"]
    tiny["failed_skullstrip_set"] = {"enabled": True, "n_subjects": 1, "hd_bet_mode": "fast", "hd_bet_tta": False}
    (tmp_path / "metal").mkdir()
    for s in ("m1", "m2"):  # a user's anomalous scans, found by globbing (role)
        (tmp_path / "metal" / f"{s}_FLAIR.nii.gz").write_bytes(b"")
    cfg["datasets"]["metal"] = {"pattern": str(tmp_path / "metal/{subject}_{sequence}.nii.gz"),
                                "sequences": ["FLAIR"], "brain_mask": {"method": "deepbet"},
                                "role": "test_anomalous", "anomaly": "metal"}
    cfg["experiments"]["im3d"]["detect"] = ["tiny", "metal"]
    cfg.pop("tables", None)  # not what this test is about
    res = _dry_run(tmp_path, cfg)
    assert res.returncode == 0, res.stderr + res.stdout
    out, r = res.stdout, cfg["results_dir"]
    masks = _rule_blocks(out, "failed_skullstrip_masks")
    assert len(masks) == 2 and all("preproc/tiny/sub-t0" in b and "native_brainmask.nii.gz" in b for b in masks)
    (table,) = _rule_blocks(out, "failed_skullstrip")
    assert f"{r}/qc/tiny_failed_skullstrip.tsv" in table
    assert table.split("input:")[1].splitlines()[0].count("agreement.json") == 2
    # the failed-strip scans: preprocessed (brain mask method pattern = the outlying mask) as the derived dataset
    derived = [b for b in _rule_blocks(out, "preprocess_subject__tinyfailedstrip") if "preproc/tinyfailedstrip/" in b]
    assert len(derived) == 2 and all("outlier_brainmask.nii.gz" in b for b in derived)
    infer = [b for b in _rule_blocks(out, "infer") if "/im3d/tiny/sub-t05" in b.split("output:")[1].splitlines()[0]]
    (block,) = infer
    inputs = block.split("input:")[1].split("output:")[0]
    assert f"{r}/qc/tiny_failed_skullstrip.tsv" in inputs
    assert f"{r}/preproc/tinyfailedstrip/sub-t05/FLAIR.nii.gz" in inputs
    assert f"{r}/preproc/tinyfailedstrip/sub-t05/brainmask.nii.gz" in inputs
    # the user's anomalous scans run as their own inference runs, preprocessed like any scan
    assert any(f"{r}/inference/im3d/metal/sub-m1" in b for b in _rule_blocks(out, "infer"))
    assert not any(f"{r}/inference/im3d/tinyfailedstrip" in b for b in _rule_blocks(out, "infer"))
