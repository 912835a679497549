"""The lazy public API of ``itermask`` (``itermask/__init__.py``): every name of ``__all__`` is
the object at its documented module, and nothing else resolves."""
from __future__ import annotations

import importlib

import pytest

import itermask

# where the package docstring says each public name lives (typed here, not read from _LOCATIONS)
DOCUMENTED = {
    "high_frequency": "itermask.core.highfreq",
    "training_mask": "itermask.core.masks",
    "subject_threshold": "itermask.core.threshold",
}


def test_all_lists_the_documented_names():
    assert sorted(itermask.__all__) == sorted(DOCUMENTED)
    assert itermask._LOCATIONS == DOCUMENTED


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_public_name_is_the_object_at_its_location(name):
    obj = getattr(itermask, name)
    assert obj is getattr(importlib.import_module(DOCUMENTED[name]), name)
    assert callable(obj) and obj.__name__ == name


def test_the_documented_examples():
    from itermask.core import highfreq, masks, threshold

    assert itermask.high_frequency is highfreq.high_frequency
    assert itermask.training_mask is masks.training_mask
    assert itermask.subject_threshold is threshold.subject_threshold
    from itermask import high_frequency  # `from itermask import name` goes through __getattr__ too

    assert high_frequency is highfreq.high_frequency


@pytest.mark.parametrize("name", ["no_such_name", "highfreq_", "_LOCATION", "High_Frequency"])
def test_unknown_name_raises_attribute_error(name):
    with pytest.raises(AttributeError, match=rf"^module 'itermask' has no attribute '{name}'$"):
        getattr(itermask, name)
    assert not hasattr(itermask, name)
    with pytest.raises(ImportError):
        exec(f"from itermask import {name}", {})
