"""itermask.config.conditions: every condition the demo study runs falls in exactly one group,
and the groups that set thresholds never hold a test split's scans."""
from __future__ import annotations

from pathlib import Path

import pytest

from itermask.config import conditions as c
from itermask.config.study import Study, load_config
from itermask.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_every_demo_condition_is_a_plain_scan_or_an_artefact():
    study = Study(load_config(ROOT / "config.yaml"), base_dir=ROOT)
    artefacts = set(study.artefact_conditions())
    assert not artefacts & set(c.RESERVED)
    seen: dict[str, set[str]] = {}
    for name in study.experiments:
        for subject in study.datasets["demo"].subjects:
            for condition in study.conditions(name, "demo", subject):
                seen.setdefault(condition, set()).add(study.datasets["demo"].split_of(subject))
    assert set(seen) == {*c.PLAIN_SCANS, *artefacts}
    # thresholds come from validation splits only; the oracle and detection's negatives from test splits
    assert all(s in ("val", "val_lesion") for v in c.VALIDATION for s in seen[v])
    assert seen[c.LESION] == {"test_lesion"} and seen[c.HEALTHY] == {"test_healthy"}
    assert set(c.ORACLE_CONDITIONS) <= set(c.LESION_CONDITIONS) and not set(c.ORACLE_CONDITIONS) & set(c.VALIDATION)


@pytest.mark.parametrize("name", [c.LESION, c.FAILED_SKULLSTRIP])
def test_a_user_anomaly_may_not_take_a_reserved_name(name, tmp_path):
    config = load_config(ROOT / "config.yaml")
    config["datasets"]["demo"]["anomaly"] = name
    config["datasets"]["demo"]["splits"]["test_anomalous"] = ["d10"]
    config["datasets"]["demo"]["splits"]["test_healthy"] = ["d09"]
    with pytest.raises(ConfigError, match=f"'{name}' is reserved"):
        Study(config, base_dir=ROOT)
