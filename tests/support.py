"""Test support: typed experiment settings built the way the pipeline builds them (Study), and
the schema's defaults of a method (library functions carry none: tests pass them)."""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from itermask.config.experiment_settings import MODEL_SECTIONS
from itermask.config.schema import schema_defaults
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
    if model_from:  # the model's network and training are its owner's
        config["experiments"]["src"] = {k: v for k, v in exp.items() if k != "infer"}
        exp["model_from"] = "src"
        for key in MODEL_SECTIONS:
            exp.pop(key, None)
    study = Study(config)
    return study.training_settings("e") if training else study.settings("e")


@lru_cache(maxsize=1)
def _filled_schema_defaults() -> dict:
    """A config holding every schema default, an experiment of each IterMask method among them
    (so ``experiments.<method>.<key>`` paths hold their defaults too)."""
    return schema_defaults({"preprocess": {}, "experiments": {m: {"method": m, "dataset": "d", "sequence": "FLAIR"}
                                                              for m in ("itermask3d", "itermask2")}})


def schema_default(path: str) -> Any:
    """The schema's default at a dotted config path, e.g. ``method_defaults.itermask3d.infer.tol``
    (a copy)."""
    node: Any = _filled_schema_defaults()
    for key in path.split("."):
        node = node[key]
    return copy.deepcopy(node)


def network_settings(method: str, **over: Any) -> dict:
    """The schema's ``method_defaults.<method>.network`` with ``over`` set (e.g. small ``channels``,
    itermask2's ``image_size``)."""
    return {**schema_default(f"method_defaults.{method}.network"), **over}


def threshold_options(method: str = "itermask3d", **over: Any) -> dict:
    """``subject_threshold``'s config options at the schema's ``method_defaults.<method>.infer``
    (y_limit, r2_min, no_exceed = k_fallback, scale_at = curve_scale_percent), with ``over`` set."""
    cfg = schema_default(f"method_defaults.{method}.infer")
    return {"y_limit": cfg["y_limit"], "r2_min": cfg["r2_min"], "no_exceed": cfg["k_fallback"],
            "scale_at": cfg["curve_scale_percent"], **over}


def schema_amp() -> bool:
    """``amp`` of the schema's ``precision`` (auto: autocast), as the pipeline reads it."""
    from itermask.io.workflow import config_amp

    return config_amp({"precision": schema_default("precision")})


def run3d_settings(**over: Any) -> dict:
    """``run_itermask3d``'s keywords but ``percents``/``choose_tau`` at the schema's itermask3d
    settings (network input full, precision auto), on the CPU, with ``over`` set."""
    cfg = schema_default("method_defaults.itermask3d.infer")
    return {"variant": "full", "tol": cfg["tol"], "max_iterations": cfg["max_iterations"],
            "batch_size": cfg["batch_size"], "device": "cpu", "amp": schema_amp(),
            "phase_b_noise": cfg["phase_b_noise"], "phase_b_start": cfg["phase_b_start"], **over}


def run2d_settings(**over: Any) -> dict:
    """``run_itermask2``'s keywords but ``tau`` at the schema's itermask2 settings (network input
    full, not single-step, precision auto), on the CPU, with ``over`` set."""
    cfg = schema_default("method_defaults.itermask2.infer")
    return {"variant": "full", "first_percentile": cfg["first_step_percentile"], "tol": cfg["tol"],
            "max_iterations": cfg["max_iterations"], "batch_size": cfg["batch_size"], "device": "cpu",
            "amp": schema_amp(), "single_step": False, **over}
