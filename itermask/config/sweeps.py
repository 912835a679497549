"""Sensitivity sweeps (config ``sweeps:``): derived experiments, one per swept value.

A derived experiment is named by `sweep_name`: ``<experiment>__<param>_<value>`` with the
value's decimal point written 'p' (``im2_flair__tau_percentile_60``,
``im3d_flair_seg__gamma_0p05``). `tau_percentile` and `gamma` sweeps reuse the base
experiment's model (`model_from`) and override `infer`; `hf_radius` sweeps train one model per
value (experiment-level `hf_radius`) and run the single-step -spatial model (variant
`no_spatial`, as the papers' Fig. 3 does; METHOD.md §6), so their point at the base's own radius
is a derived experiment too (`<experiment>__hf_radius_<r>`, on the base's model) unless the base
is itself no_spatial. Derived experiments only segment (no detection runs) and run no
per-image-best oracle (``oracle_tau_factors`` []: the sensitivity figure plots the honest
protocol, and the oracle costs more than the run); otherwise a value equal to the base
experiment's own setting adds no experiment (the base stands for it).
"""
from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import TYPE_CHECKING

from itermask.config.experiment_settings import MODEL_SECTIONS
from itermask.errors import ConfigError

if TYPE_CHECKING:
    from itermask.config.study import Study

SWEEP_PARAMS = ("tau_percentile", "hf_radius", "gamma")
SWEEP_METHOD = {"tau_percentile": "itermask2", "gamma": "itermask3d"}  # hf_radius: both


def sweep_value_token(value: float) -> str:
    """Wildcard-safe text of a sweep value: plain decimal digits, 'p' for the point.

    60 -> '60', 60.0 -> '60', 0.05 -> '0p05', 1e-5 -> '0p00001' (no exponent, no '-').
    """
    text = format(Decimal(str(value)).normalize(), "f")
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        raise ConfigError(f"sweep value {value!r} must be a non-negative number")
    return text.replace(".", "p")


def sweep_name(experiment: str, param: str, value: float) -> str:
    """Name of the experiment derived from `experiment` with `param` set to `value`."""
    return f"{experiment}__{param}_{sweep_value_token(value)}"


def derived_entry(study: "Study", base: str, param: str, value: float) -> dict:
    """Raw experiment entry of `base` with `param` = `value` (see the module docstring)."""
    entry = copy.deepcopy(study.experiments[base])
    entry["detect"] = False
    entry["infer"] = {**entry.get("infer", {}), "oracle_tau_factors": []}  # no oracle (module docstring)
    entry["label"] = f"{entry.get('label', base)} ({param} {value:g})"
    if param == "hf_radius":
        entry["variant"] = "no_spatial"  # Fig. 3: the single-step model
        if float(value) == study.setting(base, param):  # the base's radius: the base's model
            return _on_model_of(entry, base)
        owner = study.experiments[study.model_experiment(base)]
        entry.pop("model_from", None)
        for key in MODEL_SECTIONS:  # train as the model the base uses was trained
            if key in owner:
                entry[key] = copy.deepcopy(owner[key])
            else:
                entry.pop(key, None)
        entry["hf_radius"] = int(value)
    else:
        entry = _on_model_of(entry, base)
        entry["infer"] = {**entry.get("infer", {}), param: value}
    return entry


def _on_model_of(entry: dict, base: str) -> dict:
    """``entry`` on the model of ``base``: a shared model's network and training are its owner's."""
    entry["model_from"] = base
    for key in MODEL_SECTIONS:
        entry.pop(key, None)
    return entry


def _check_sweep(study: "Study", i: int, base: str, param: str, values: list) -> None:
    where = f"config key 'sweeps.{i}'"
    if base not in study.config["experiments"]:
        raise ConfigError(f"{where}.experiment: '{base}' is not an experiment")
    if (base, param) in study.sweeps:
        raise ConfigError(f"{where}: a second sweep of '{param}' for '{base}' (give all values in one)")
    s = study.settings(base)
    if param in SWEEP_METHOD and s.method != SWEEP_METHOD[param]:
        raise ConfigError(f"{where}.param: '{param}' is a setting of {SWEEP_METHOD[param]}, '{base}' is {s.method}")
    if param == "hf_radius" and s.variant == "no_freq":
        raise ConfigError(f"{where}.param: '{base}' is a no_freq experiment: it has no HF input")
    if not s.segment:
        raise ConfigError(f"{where}.experiment: '{base}' does not segment (segment: false); sweeps compare segmentation")
    for v in values:
        if param == "tau_percentile" and not (float(v).is_integer() and 1 <= v <= 99):
            raise ConfigError(f"{where}.values: tau_percentile {v!r} must be an integer 1..99 "
                              "(training stores the validation error quantiles at integer percentiles)")
        if param == "hf_radius" and not float(v).is_integer():
            raise ConfigError(f"{where}.values: hf_radius {v!r} must be an integer")
        if param == "gamma" and v <= 0:
            raise ConfigError(f"{where}.values: gamma {v!r} must be > 0")


def add_sweeps(study: "Study") -> list[str]:
    """Add the experiments of config `sweeps:` to ``study.experiments`` and record each sweep's
    members (the base at its own value first) in ``study.sweeps``; return the derived names."""
    derived: list[str] = []
    for i, sweep in enumerate(study.config["sweeps"]):
        base, param, values = sweep["experiment"], sweep["param"], sweep["values"]
        _check_sweep(study, i, base, param, values)
        own = study.setting(base, param)
        single = param == "hf_radius" and study.settings(base).variant != "no_spatial"
        members = {} if single else {base: own}
        # the base experiment is the point at its own value, unless it is not the swept model
        for v in ([own] if single else []) + [v for v in values if float(v) != own]:
            name = sweep_name(base, param, v)
            if name in study.experiments:
                raise ConfigError(f"config key 'sweeps.{i}'.values: derived experiment '{name}' already exists "
                                  "(repeated value, or an experiment of that name)")
            study.experiments[name] = derived_entry(study, base, param, v)
            members[name] = float(v)
            derived.append(name)
        study.sweeps[(base, param)] = members
    return derived
