"""``model_from`` (itermask.config.checks): an experiment uses another's trained model when both
have the same dataset and sequence and the same method, or methods of one family
(``Method.model_family``: DDPM and AutoDDPM train the same network), unless the sharing
experiment calibrates on validation data when training ends. A shared model's network and
training settings are its owner's (itermask.config.study)."""
from __future__ import annotations

import pytest

from itermask import methods
from itermask.config.study import Study
from itermask.errors import ConfigError


def _config(shared: dict) -> dict:
    diffusion = {"dataset": "adni", "sequence": "FLAIR", "segment": True}
    return {
        "results_dir": "res", "seed": 0,
        "datasets": {"adni": {"pattern": "adni/{subject}_{sequence}.nii.gz", "sequences": ["FLAIR"],
                              "brain_mask": {"method": "stripped"},
                              "splits": {"train": ["a1"], "val": ["a2"], "test_lesion": ["a3"]},
                              "label_pattern": "adni/{subject}_label.nii.gz"}},
        "preprocess": {"spacing_mm": 1.0, "box": [32, 32, 32]},
        "experiments": {"ddpm": {"method": "ddpm", **diffusion, "train": {"steps": 1},
                                 "network": {"timesteps": 50}},
                        "dae": {"method": "dae", "dataset": "adni", "sequence": "FLAIR", "train": {"steps": 1}},
                        "shared": {**diffusion, **shared}},
    }


def test_autoddpm_may_use_the_ddpm_model_and_trains_none_of_its_own():
    study = Study(_config({"method": "autoddpm", "model_from": "ddpm"}))
    assert study.model_experiment("shared") == "ddpm"
    assert study.trained_experiments() == ["dae", "ddpm"]


@pytest.mark.parametrize("shared, message", [
    ({"method": "autoddpm", "model_from": "dae"}, "'dae' is a 'dae' experiment"),
    ({"method": "dae", "model_from": "ddpm"}, "'ddpm' is a 'ddpm' experiment"),
    ({"method": "autoddpm", "model_from": "ddpm",
      "infer": {"mask_threshold_val_percentile": 99, "residual_percentile": None}},
     "calibrates on validation data when training ends"),
])
def test_a_model_of_another_family_or_one_the_sharer_must_calibrate_is_refused(shared, message):
    with pytest.raises(ConfigError, match=message):
        Study(_config(shared))


def test_the_diffusion_methods_form_one_family_and_the_others_none():
    ddpm, autoddpm, dae = (methods.get(m) for m in ("ddpm", "autoddpm", "dae"))
    assert autoddpm.shares_models_with(ddpm) and ddpm.shares_models_with(autoddpm)
    assert not dae.shares_models_with(ddpm) and dae.shares_models_with(dae)


def test_a_shared_model_brings_its_owners_network_and_training_settings():
    study = Study(_config({"method": "autoddpm", "model_from": "ddpm"}))
    shared, owner = study.settings("shared"), study.settings("ddpm")
    assert shared.model_owner == "ddpm" and shared.train == owner.train and shared.train.steps == 1
    assert shared.network == owner.network and shared.network["timesteps"] == 50  # not autoddpm's default


@pytest.mark.parametrize("key, value", [("train", {"steps": 1}), ("network", {"timesteps": 50})])
def test_an_experiment_on_another_ones_model_sets_no_network_or_training_of_its_own(key, value):
    with pytest.raises(ConfigError, match=rf"experiments\.shared\.{key}': 'shared' uses the model of 'ddpm' "
                                          rf"\(model_from\), whose {key} settings are that experiment's"):
        Study(_config({"method": "autoddpm", "model_from": "ddpm", key: value}))
