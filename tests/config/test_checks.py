"""Checks of meaning (itermask.config.checks): an experiment's own synthetic artefacts
(``detect_artefacts``) and the "different sequence" artefact they may need (issue 10: a T2
model detecting on a real anomalous T2 set while artefacts.other_sequence is T2w)."""
from __future__ import annotations

import pytest

from itermask.config.study import Study
from itermask.errors import ConfigError


def _config(**experiment) -> dict:
    """adni (FLAIR, T2w) with healthy test scans and a T2w anomalous set; a FLAIR model whose
    'different sequence' is T2w (as paper.yaml) and a T2w model (the metallic-susceptibility one)."""
    return {
        "results_dir": "res", "seed": 0,
        "datasets": {
            "adni": {"pattern": "adni/{subject}_{sequence}.nii.gz", "sequences": ["FLAIR", "T2w"],
                     "brain_mask": {"method": "stripped"},
                     "splits": {"train": ["a1"], "val": ["a2"], "test_healthy": ["a3", "a4"]}},
            "metal": {"pattern": "metal/{subject}_{sequence}.nii.gz", "sequences": ["T2w"],
                      "brain_mask": {"method": "stripped"}, "splits": {"test_anomalous": ["m1"]},
                      "anomaly": "metallic_susceptibility"},
        },
        "preprocess": {"spacing_mm": 1.0, "box": [32, 32, 32]},
        "artefacts": {"types": ["spike", "other_sequence"], "other_sequence": "T2w",
                      "severity": {"spike": {"param": "intensity", "values": [1.0, 2.0]}}},
        "experiments": {
            "flair": {"method": "itermask3d", "dataset": "adni", "sequence": "FLAIR", "train": {"steps": 1},
                      "detect": True},
            "t2": {"method": "itermask3d", "dataset": "adni", "sequence": "T2w", "train": {"steps": 1},
                   "detect": ["adni", "metal"], **experiment},
        },
    }


def test_an_experiment_runs_every_artefact_type_by_default_and_its_own_list_otherwise():
    cfg = _config(detect_artefacts=[])
    cfg["experiments"]["spikes"] = {**cfg["experiments"]["flair"], "detect_artefacts": ["spike"]}
    study = Study(cfg)
    assert study.conditions("flair", "adni", "a3") == ["healthy", "spike", "other_sequence", "spike-s0", "spike-s1"]
    assert study.conditions("spikes", "adni", "a3") == ["healthy", "spike", "spike-s0", "spike-s1"]
    assert study.conditions("t2", "adni", "a3") == ["healthy"]  # no synthetic artefacts
    assert study.conditions("t2", "metal", "m1") == ["metallic_susceptibility"]
    assert study.artefact_conditions() == ["spike", "other_sequence", "spike-s0", "spike-s1"]  # what the job writes


@pytest.mark.parametrize("experiment, message", [
    ({}, "'artefacts.other_sequence': 'T2w' must be another sequence of dataset 'adni' than experiment 't2'"),
    ({"detect_artefacts": ["spike", "other_sequence"]}, "leave other_sequence out of experiments.t2.detect_artefacts"),
    # the artefacts of (adni, T2w) are made together: other_sequence too, against T2w itself
    ({"detect_artefacts": ["spike"]}, "set detect_artefacts: \\[\\]"),
    ({"detect_artefacts": ["zipper"]}, "'experiments.t2.detect_artefacts': \\['zipper'\\] are not in artefacts.types"),
])
def test_a_model_of_the_other_sequence_needs_its_own_artefact_list(experiment, message):
    with pytest.raises(ConfigError, match=message):
        Study(_config(**experiment))


def test_the_t2_model_is_accepted_without_synthetic_artefacts_or_with_another_other_sequence():
    Study(_config(detect_artefacts=[]))
    cfg = _config()
    cfg["artefacts"]["other_sequence"] = "FLAIR"  # the FLAIR model itself then needs its own list
    cfg["experiments"]["flair"]["detect_artefacts"] = []
    study = Study(cfg)
    assert "other_sequence" in study.conditions("t2", "adni", "a3")
    cfg["experiments"]["flair"]["detect_artefacts"] = None  # null: every type, other_sequence FLAIR included
    with pytest.raises(ConfigError, match="another sequence of dataset 'adni' than experiment 'flair'"):
        Study(cfg)
