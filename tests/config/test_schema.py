"""The schema loader: libyaml's parser (when PyYAML has it) reads schema.yaml as the pure-Python
safe loader does."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from itermask.config.schema import _schema_text, load_schema


def test_load_schema_equals_the_safe_loaders_reading():
    assert load_schema() == yaml.safe_load(_schema_text())


def test_load_schema_returns_a_fresh_copy():
    first = load_schema()
    first["properties"].clear()
    assert load_schema()["properties"]


def test_a_name_pattern_is_said_in_words():
    """A dataset name with '-' gets the allowed characters in words, not a regular expression."""
    from itermask.config.study import Study, load_config
    from itermask.errors import ConfigError

    cfg = load_config(Path(__file__).resolve().parents[2] / "config.yaml")
    cfg["datasets"]["my-study"] = cfg["datasets"].pop("demo")
    with pytest.raises(ConfigError, match=r"config key 'datasets': 'my-study' is not allowed as a name here: use "
                                          r"letters A-Z, a-z and digits 0-9 only$"):
        Study(cfg)
