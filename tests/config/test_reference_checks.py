"""Checks of meaning (itermask.config.checks) of the names a table block, a table's published
numbers or an artefact parameter refer to: a typo fails at parse time, naming the key and the
valid choices, instead of leaving cells or comparisons empty or failing in every artefacts job."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from itermask.artefacts.algorithms import REFERENCE_PARAMS, apply_artefact
from itermask.config.study import Study, load_config
from itermask.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DETECTION = "itermask3d_table1_synthetic_artefact_detection"


@pytest.fixture(scope="module")
def demo() -> dict:
    return load_config(ROOT / "config.yaml")


def _table(cfg: dict, name: str = DETECTION) -> dict:
    return next(t for t in cfg["tables"] if t["name"] == name)


def test_a_block_dataset_must_be_a_dataset_or_a_derived_one(demo):
    cfg = copy.deepcopy(demo)
    _table(cfg)["blocks"][0]["dataset"] = "dmeo"
    with pytest.raises(ConfigError, match=rf"'tables' \({DETECTION}\), block 'other_sequence': dataset 'dmeo' "
                                          r"is not a dataset \(demo, demofailedstrip\)"):
        Study(cfg, base_dir=ROOT)
    cfg = copy.deepcopy(demo)
    _table(cfg, "itermask3d_table2_real_artefacts")["blocks"][0]["dataset"] = "demofailedstrip"  # derived set
    Study(cfg, base_dir=ROOT)


def test_a_detection_block_anomaly_must_be_a_condition(demo):
    cfg = copy.deepcopy(demo)
    _table(cfg)["blocks"][1]["anomaly"] = "kspace_nosie"
    with pytest.raises(ConfigError, match=rf"'tables' \({DETECTION}\), block 'kspace_noise': anomaly "
                                          r"'kspace_nosie' is not a detection condition \(.*kspace_noise.*"
                                          r"ghosting-s0.*failed_skullstrip"):
        Study(cfg, base_dir=ROOT)
    cfg = copy.deepcopy(demo)  # a severity level, every anomaly ('all') and the failed-strip set are conditions
    blocks = _table(cfg)["blocks"]
    blocks[0]["anomaly"], blocks[1]["anomaly"], blocks[2]["anomaly"] = "ghosting-s2", "all", "failed_skullstrip"
    Study(cfg, base_dir=ROOT)


def test_a_published_table_must_exist(demo):
    cfg = copy.deepcopy(demo)
    _table(cfg)["published"] = "itermask3d_table1_synthetic_artefacts"
    with pytest.raises(ConfigError, match=rf"'tables' \({DETECTION}\), key 'published': "
                                          r"'itermask3d_table1_synthetic_artefacts' is not a published table in "
                                          rf"published/ \(.*{DETECTION}.*; null: none\)"):
        Study(cfg, base_dir=ROOT)
    _table(cfg)["published"] = None  # no published numbers
    Study(cfg, base_dir=ROOT)


def test_artefact_params_must_be_parameters_of_the_type(demo):
    cfg = copy.deepcopy(demo)
    cfg["artefacts"]["params"]["ghosting"]["intesity"] = 1.0
    known = ", ".join(sorted(REFERENCE_PARAMS["ghosting"]))
    with pytest.raises(ConfigError, match=rf"'artefacts\.params\.ghosting': \['intesity'\] are not parameters of "
                                          rf"artefact 'ghosting' \(its parameters: {known}\)"):
        Study(cfg, base_dir=ROOT)
    cfg = copy.deepcopy(demo)
    cfg["artefacts"]["params"]["ghostng"] = {"intensity": 1.0}
    with pytest.raises(ConfigError, match=r"'artefacts\.params\.ghostng': 'ghostng' is not an artefact type"):
        Study(cfg, base_dir=ROOT)


def test_a_severity_param_must_be_a_parameter_of_the_type(demo):
    cfg = copy.deepcopy(demo)
    cfg["artefacts"]["severity"]["ghosting"]["param"] = "num_ghost"
    known = ", ".join(sorted(REFERENCE_PARAMS["ghosting"]))
    with pytest.raises(ConfigError, match=rf"'artefacts\.severity\.ghosting\.param': 'num_ghost' is not a "
                                          rf"parameter of artefact 'ghosting' \(its parameters: {known}\)"):
        Study(cfg, base_dir=ROOT)
    cfg["artefacts"]["severity"]["ghosting"]["param"] = "num_ghosts"
    Study(cfg, base_dir=ROOT)


@pytest.mark.parametrize("artefact, key, value, expected", [
    ("zipper", "columns", 15, r"expected a list like the reference value \[60, 90, 120\], got 15"),
    ("zipper", "columns", ["15", 22], r"expected a number like the reference value 60, got '15'"),
    ("chunk_top", "size", "8", r"expected a number like the reference value 30, got '8'"),
    ("spike", "positions", [0.4, 0.4, 0.4], r"expected a list like the reference value \[0.45, 0.45, 0.45\], got 0.4"),
    ("bias_field", "coefficients", [0.1, 0.2, 0.3],
     r"expected a number or a list of two numbers \(a range\) like the reference value 0.1"),
    ("ghosting", "restore", True, r"expected a number or null like the reference value 0.01, got True"),
])
def test_artefact_param_values_have_the_reference_kind(demo, artefact, key, value, expected):
    cfg = copy.deepcopy(demo)
    cfg["artefacts"]["params"][artefact] = {key: value}
    with pytest.raises(ConfigError, match=rf"'artefacts\.params\.{artefact}\.{key}': {expected}"):
        Study(cfg, base_dir=ROOT)


def test_artefact_params_accept_what_the_implementation_takes(demo):
    cfg = copy.deepcopy(demo)
    edited = {"bias_field": {"coefficients": [0.05, 0.1], "order": 2},
              "ghosting": {"restore": None, "intensity": 1}, "zipper": {"columns": []}}
    cfg["artefacts"]["params"].update(copy.deepcopy(edited))
    study = Study(cfg, base_dir=ROOT)
    # what the config check accepts, the implementation runs: each edited type's params as the
    # Study resolves them (the config's over the reference ones) on a small synthetic volume
    rng = np.random.default_rng(0)
    x = rng.random((16, 16, 16), dtype=np.float32) + 1.0
    brain = np.zeros(x.shape, bool)
    brain[4:12, 4:12, 4:12] = True
    for name, params in edited.items():
        kind, resolved = study.artefact_params(name)
        assert kind == name and {k: resolved[k] for k in params} == params, resolved
        out, record = apply_artefact(name, x, brain, resolved, np.random.default_rng(1))
        assert out.shape == x.shape and out.dtype == np.float32 and np.all(np.isfinite(out)), name
        assert record["params"] == resolved
        if name == "zipper":  # no columns: no stripes, the volume comes back unchanged
            assert record["sampled"]["stripe_columns"] == []
            np.testing.assert_array_equal(out, x)
    cfg["artefacts"]["severity"]["ghosting"]["values"] = [0.5, "2"]
    with pytest.raises(ConfigError, match=r"'artefacts\.severity\.ghosting\.values\[1\]': expected a number"):
        Study(cfg, base_dir=ROOT)


def test_a_block_without_dataset_must_not_pool_two_test_sets(demo, tmp_path):
    """METHOD.md §7: one cell per (experiment, test dataset)."""
    cfg = copy.deepcopy(demo)
    for seq in ("FLAIR", "T2w"):
        (tmp_path / f"sub-e1_{seq}.nii.gz").write_bytes(b"")
    cfg["datasets"]["ext"] = {"pattern": str(tmp_path / "sub-{subject}_{sequence}.nii.gz"),
                              "sequences": ["FLAIR", "T2w"], "role": "test_healthy"}
    table = _table(cfg, "itermask3d_table1_synthetic_artefact_detection")
    table["blocks"][0]["dataset"] = None
    Study(cfg, base_dir=ROOT)  # each row's experiment detects on one test set: that one
    cfg["experiments"]["im3d_flair"]["detect"] = ["demo", "ext"]
    with pytest.raises(ConfigError, match=rf"'tables' \({DETECTION}\), block 'other_sequence': no 'dataset', but "
                                          r"experiment 'im3d_flair' has 2 test sets to detect \(demo, ext\); "
                                          r"name the block's dataset"):
        Study(cfg, base_dir=ROOT)
