"""The schema loader: libyaml's parser (when PyYAML has it) reads schema.yaml as the pure-Python
safe loader does."""
from __future__ import annotations

import yaml

from itermask.config.schema import _schema_text, load_schema


def test_load_schema_equals_the_safe_loaders_reading():
    assert load_schema() == yaml.safe_load(_schema_text())


def test_load_schema_returns_a_fresh_copy():
    first = load_schema()
    first["properties"].clear()
    assert load_schema()["properties"]
