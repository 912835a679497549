"""One experiment's frozen settings (`ExperimentSettings`): its method's defaults deep-merged with
the experiment's own `network`, `train` and `infer` keys. An experiment that uses another's model
(`model_from`) takes that model's network and training settings from the experiment that trained
it, and may not set its own: they would describe a model it does not run. It takes the model's
high-frequency radius too, unless it repeats it (`hf_radius`)."""
from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

from itermask import methods
from itermask.config.settings import ExperimentSettings, TrainSettings, freeze
from itermask.errors import ConfigError

if TYPE_CHECKING:
    from itermask.config.study import Study

MODEL_SECTIONS = ("network", "train")  # what a model is; its owner's for an experiment with model_from


def deep_merge(base: dict, override: dict) -> dict:
    """Return `base` updated recursively with `override` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def build_settings(study: "Study", name: str) -> ExperimentSettings:
    """The settings of experiment `name` (ConfigError naming the config key when they are not valid)."""
    exp, owner = study.experiments[name], study.model_experiment(name)
    model = None  # the settings of the experiment that trained the model, when another did
    if owner != name:
        for key in MODEL_SECTIONS:
            if key in exp:
                raise ConfigError(f"config key 'experiments.{name}.{key}': '{name}' uses the model of '{owner}' "
                                  f"(model_from), whose {key} settings are that experiment's: remove this key")
        model = study.settings(owner)
    merged = _merged_sections(study, name)
    if model is not None:
        network, train = model.network, model.train
    elif (merged["train"]["steps"] is None) == (merged["train"]["epochs"] is None):
        raise ConfigError(f"config key 'experiments.{name}.train': set exactly one of 'steps' and 'epochs' "
                          "(here or in method_defaults; set the other to null)")
    else:
        network, train = freeze(merged["network"]), TrainSettings.from_dict(merged["train"])
    settings = ExperimentSettings(
        name=name, method=exp["method"], dataset=exp["dataset"], sequence=exp["sequence"], variant=exp["variant"],
        label=exp.get("label", name), model_owner=owner, hf_radius=study.preprocess.hf_radius,
        detect=_testsets(exp, "detect"), segment=_testsets(exp, "segment"), network=network, train=train,
        infer=freeze(merged["infer"]), seed=study.seed,
    )
    method = methods.get(settings.method)
    if "hf_radius" in exp:
        radius = int(exp["hf_radius"])
    elif model is not None:  # the model's input (an own hf_radius must equal it: itermask.config.checks)
        radius = model.hf_radius
    elif method.train_inputs(settings).kind == "slices":
        radius = study.preprocess.slices2d.hf_radius
    else:
        radius = study.preprocess.hf_radius
    settings = dataclasses.replace(settings, hf_radius=radius)
    method.check(settings)
    return settings


def _merged_sections(study: "Study", name: str) -> dict:
    """The method's default `network`, `train` and `infer` sections with the experiment's own keys;
    ConfigError for a key the method does not have (e.g. a DAE key on the AE)."""
    exp = study.experiments[name]
    own = {k: exp[k] for k in ("network", "train", "infer") if k in exp}
    defaults = study.config["method_defaults"][exp["method"]]
    for section, values in own.items():
        unknown = sorted(set(values) - set(defaults[section]))
        if unknown:
            raise ConfigError(f"config key 'experiments.{name}.{section}': {', '.join(map(repr, unknown))} "
                              f"not a setting of method '{exp['method']}' (its keys: "
                              f"{', '.join(sorted(defaults[section]))})")
    return deep_merge(defaults, own)


def _testsets(exp: dict, kind: str) -> tuple[str, ...]:
    """Datasets an experiment runs on for `kind` ('detect' or 'segment')."""
    value = exp[kind]
    return (exp["dataset"],) if value is True else () if value is False else tuple(value)
