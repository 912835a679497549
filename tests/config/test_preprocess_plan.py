"""itermask.config.preprocess_plan: what each subject's preprocessing job writes, from the study."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from itermask.config.preprocess_plan import (
    id_pattern, labelled_subjects, slice_reads, slice_role, slice_sequences,
)
from itermask.config.study import Study, load_config

ROOT = Path(__file__).resolve().parents[2]


def tiny(**experiments) -> Study:
    config = load_config(ROOT / "tests/configs/tiny.yaml")
    config["experiments"] = {**config["experiments"], **experiments}
    config["sweeps"] = []
    return Study(config, base_dir=ROOT)


def test_id_pattern_matches_exactly_its_ids():
    ids = ["s1", "s10", "s2", "a.b", "B7"]
    pattern = re.compile(id_pattern(ids))
    for candidate, expected in [("s1", True), ("s10", True), ("s2", True), ("a.b", True), ("B7", True),
                                ("s", False), ("s3", False), ("s100", False), ("axb", False), ("b7", False),
                                ("", False)]:
        assert bool(pattern.fullmatch(candidate)) == expected, candidate
    assert not re.fullmatch(id_pattern([]), "") and not re.fullmatch(id_pattern([]), "s1")


def test_id_pattern_of_many_ids_is_a_trie():
    ids = [f"s{i:05d}" for i in range(1, 10001)]
    labelled = ids[9000:]
    pattern = id_pattern(labelled)
    assert "|s09" not in pattern and pattern.count("s") == 1  # a shared prefix is written once
    compiled = re.compile(pattern)
    assert sum(bool(compiled.fullmatch(i)) for i in ids) == 1000
    assert all(compiled.fullmatch(i) for i in labelled)


def test_slice_roles():
    assert [slice_role(s) for s in ("train", "val", "val_lesion", "test_lesion", "test_healthy", "test_anomalous")] == [
        "train", "train", "test", "test", "all", "all"]


def test_tiny_study_writes_flair_slices_for_both_kinds_of_subject():
    study = tiny()
    assert labelled_subjects(study.datasets["tiny"]) == ["t08", "t06", "t07"]
    # im2 (itermask2 on FLAIR) trains on train/val and segments the lesioned subjects (validation and test)
    assert slice_reads(study) == {("tiny", "train", "FLAIR"), ("tiny", "val", "FLAIR"), ("tiny", "val_lesion", "FLAIR"),
                                  ("tiny", "test_lesion", "FLAIR")}
    assert slice_sequences(study) == {("tiny", False): ("FLAIR",), ("tiny", True): ("FLAIR",)}


def test_slices_follow_the_experiments_that_read_them():
    base = {"method": "itermask2", "dataset": "tiny"}
    # a 2D model that only trains on T1w: slices of the unlabelled subjects
    study = tiny(im2_t1={**base, "sequence": "T1w", "segment": False})
    assert slice_sequences(study) == {("tiny", False): ("T1w", "FLAIR"), ("tiny", True): ("FLAIR",)}
    # volumes only: no slices at all; at another radius: rule slices2d's, not the job's
    config = load_config(ROOT / "tests/configs/tiny.yaml")
    config["experiments"]["im2"]["hf_radius"] = 10
    config["sweeps"] = []
    assert slice_sequences(Study(config, base_dir=ROOT)) == {("tiny", False): (), ("tiny", True): ()}
    del config["experiments"]["im2"]
    config["tables"] = [t for t in config["tables"] if t["name"] != "segmentation_2d"]
    assert slice_sequences(Study(config, base_dir=ROOT)) == {("tiny", False): (), ("tiny", True): ()}


def test_a_cyclic_unet_reads_its_intermediate_sequences_slices():
    study = tiny(cyc={"method": "cyclic_unet", "dataset": "tiny", "sequence": "FLAIR", "segment": True,
                      "network": {"spatial_dims": 2, "intermediate": "T1w"},
                      "train": {"steps": 10, "epochs": None, "rot90_p": 0}})
    assert slice_sequences(study)[("tiny", False)] == ("T1w", "FLAIR")


@pytest.mark.parametrize("dataset, labelled, sequences", [
    ("brats2d", True, ("FLAIR", "T1w", "T1ce", "T2w")),  # labels on every split: one rule
    ("isles2d", True, ("FLAIR", "T1w")),
    ("adni", False, ("FLAIR",)),
    ("brats3d", True, ()),
])
def test_paper_study(dataset, labelled, sequences):
    study = Study(load_config(ROOT / "paper.yaml"), base_dir=ROOT)
    assert slice_sequences(study)[(dataset, labelled)] == sequences
    d = study.datasets[dataset]
    assert labelled_subjects(d) == ([s for s in d.subjects if d.label(s)])
