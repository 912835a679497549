"""Test support: typed experiment settings built the way the pipeline builds them (Study)."""
from __future__ import annotations

from typing import Any

from itermask.config.settings import ExperimentSettings
from itermask.config.study import Study


def experiment_settings(method: str, variant: str = "full", *, network: dict | None = None,
                        train: dict | None = None, infer: dict | None = None, hf_radius: int | None = None,
                        seed: int = 0, model_from: bool = False, training: bool = False) -> ExperimentSettings:
    """ExperimentSettings of one experiment on a stand-in dataset, schema defaults filled
    (``model_from``: the experiment uses the model of another one, as fixed-tau runs do;
    ``training``: the view a training job gets, ``Study.training_settings``)."""
    exp: dict[str, Any] = {"method": method, "dataset": "toy", "sequence": "FLAIR", "variant": variant}
    for key, value in (("network", network), ("train", train), ("infer", infer), ("hf_radius", hf_radius)):
        if value is not None:
            exp[key] = value
    exp.setdefault("train", {})
    if "steps" not in exp["train"] and "epochs" not in exp["train"]:
        exp["train"]["steps"] = 1
    config = {
        "results_dir": "results", "seed": seed,
        "datasets": {"toy": {"pattern": "toy/{subject}_{sequence}.nii.gz", "sequences": ["FLAIR"],
                             "brain_mask": {"method": "stripped"}, "splits": {"train": ["a"], "val": ["b"]}}},
        "preprocess": {"spacing_mm": 1.0, "box": [32, 32, 32]},
        "experiments": {"e": exp},
    }
    if model_from:
        config["experiments"]["src"] = {k: v for k, v in exp.items() if k != "infer"}
        exp["model_from"] = "src"
    study = Study(config)
    return study.training_settings("e") if training else study.settings("e")
