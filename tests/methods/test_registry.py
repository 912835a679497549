"""The method registry: every method is found by name, declares its inputs, and importing
the registry (which the workflow does while it builds the DAG) never imports torch."""
from __future__ import annotations

import subprocess
import sys

import pytest
from support import experiment_settings

from itermask import methods
from itermask.errors import ConfigError
from itermask.methods.base import InputSpec, Method


def test_every_module_is_a_method_named_after_it():
    assert {"itermask3d", "itermask2"} <= set(methods.names())
    assert "base" not in methods.names() and not any(n.startswith("_") for n in methods.names())
    for name in methods.names():
        m = methods.get(name)
        assert isinstance(m, Method) and m.name == name and m.spatial_dims in (2, 3)
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        methods.get("nope")


def test_registry_and_input_declarations_import_no_torch():
    """Planning (the Snakefile) asks every method for its inputs; that must not import torch."""
    code = """
import sys
from itermask import methods
from itermask.config.study import Study
config = {"results_dir": "results", "seed": 0,
          "datasets": {"toy": {"pattern": "toy/{subject}_{sequence}.nii.gz", "sequences": ["FLAIR", "T1w"],
                               "brain_mask": {"method": "stripped"}, "splits": {"train": ["a"], "val": ["b"]}}},
          "preprocess": {"spacing_mm": 1.0, "box": [32, 32, 32]},
          "experiments": {n: {"method": n, "dataset": "toy", "sequence": "FLAIR", "train": {"steps": 1}}
                          for n in methods.names()}}
study = Study(config)
specs = []
for n in methods.names():
    s, m = study.settings(n), methods.get(n)
    specs += [m.train_inputs(s)] + [m.condition_inputs(s, c) for c in ("val", "lesion", "healthy", "spike")]
print(len(specs), 'torch' in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(5 * len(methods.names())), "False"]


@pytest.mark.parametrize("variant, hf", [("full", True), ("no_spatial", True), ("no_freq", False)])
def test_itermask3d_inputs(variant, hf):
    s = experiment_settings("itermask3d", variant)
    m = methods.get("itermask3d")
    assert m.train_inputs(s) == InputSpec("volume", hf=hf)
    assert all(m.condition_inputs(s, c) == InputSpec("volume", hf=hf) for c in ("val", "lesion", "healthy", "spike"))


def test_itermask2_inputs():
    s = experiment_settings("itermask2")
    m = methods.get("itermask2")
    assert m.train_inputs(s).kind == "slices"
    assert m.condition_inputs(s, "val").kind == m.condition_inputs(s, "lesion").kind == "slices"
    # detection runs slice-wise on volumes; the 2D HF is computed on the resized slices
    assert m.condition_inputs(s, "healthy") == InputSpec("volume", hf=False)
    assert m.condition_inputs(s, "ghosting-s1") == InputSpec("volume", hf=False)


@pytest.mark.parametrize("method, extra", [("itermask2", {}), ("ddpm", {}),
                                           ("dae", {"network": {"spatial_dims": 2}, "train": {"rot90_p": 0.0}})])
def test_2d_methods_segment_whole_volumes_on_request(method, extra):
    """infer.lesion_input: volume = the IterMask3D paper's 2D rows (slice-wise, 3D metrics);
    slices (default) = the IterMask2 paper's largest-lesion slice."""
    m = methods.get(method)
    default = experiment_settings(method, **extra)
    vol = experiment_settings(method, infer={"lesion_input": "volume"}, **extra)
    for lesion in ("lesion", "val_lesion"):  # a labelled validation subject is read as a test one
        assert m.condition_inputs(default, lesion).kind == "slices"
        assert m.condition_inputs(vol, lesion).kind == "volume"
    assert m.condition_inputs(vol, "val").kind == "slices"  # validation stays on the training slices
