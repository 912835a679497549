"""Keyword defaults of library functions that duplicate schema defaults must equal them.

The pipeline always passes the configured values, but direct callers (benchmarks, notebooks,
tests) get the Python defaults: a default that drifts from schema.yaml silently changes results.
The schema defaults are filled by the package's own machinery (load_schema + FillingValidator,
as validate_schema does) into a config with one experiment per method.
"""
from __future__ import annotations

import inspect
from typing import Any

import pytest

from itermask.config.schema import FillingValidator, load_schema
from itermask.core import iterative_mask_2d as im2
from itermask.core import iterative_mask_3d as im3
from itermask.core.networks import build as net_build
from itermask.core.networks.unet2d import AttnResUNet2D
from itermask.core.networks.unet3d import ResUNet3D
from itermask.core.threshold import subject_threshold


def _filled_config() -> dict:
    """A config whose every schema default is filled (its other schema errors are irrelevant here)."""
    config: dict = {"experiments": {m: {"method": m, "dataset": "d", "sequence": "FLAIR"}
                                    for m in ("itermask3d", "itermask2")}}
    list(FillingValidator(load_schema()).iter_errors(config))
    return config


CONFIG = _filled_config()


def schema_default(path: str) -> Any:
    node: Any = CONFIG
    for key in path.split("."):
        node = node[key]
    return node


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


# (function, parameter, schema path of the default it duplicates)
MAPPED = [
    (subject_threshold, "y_limit", "method_defaults.itermask3d.infer.y_limit"),
    (subject_threshold, "y_limit", "method_defaults.itermask2.infer.y_limit"),
    (subject_threshold, "r2_min", "method_defaults.itermask3d.infer.r2_min"),
    (subject_threshold, "r2_min", "method_defaults.itermask2.infer.r2_min"),
    (subject_threshold, "no_exceed", "method_defaults.itermask3d.infer.k_fallback"),
    (subject_threshold, "no_exceed", "method_defaults.itermask2.infer.k_fallback"),
    (subject_threshold, "scale_at", "method_defaults.itermask3d.infer.curve_scale_percent"),
    (subject_threshold, "scale_at", "method_defaults.itermask2.infer.curve_scale_percent"),
    (im3.phase_a_percents, "fine_from", "method_defaults.itermask3d.infer.fine_from_percent"),
    (im3.run_itermask3d, "tol", "method_defaults.itermask3d.infer.tol"),
    (im3.run_itermask3d, "max_iterations", "method_defaults.itermask3d.infer.max_iterations"),
    (im3.run_itermask3d, "batch_size", "method_defaults.itermask3d.infer.batch_size"),
    (im3.run_itermask3d, "phase_b_noise", "method_defaults.itermask3d.infer.phase_b_noise"),
    (im3.run_itermask3d, "phase_b_start", "method_defaults.itermask3d.infer.phase_b_start"),
    (im3.run_itermask3d, "variant", "experiments.itermask3d.variant"),
    (im2.run_itermask2, "tol", "method_defaults.itermask2.infer.tol"),
    (im2.run_itermask2, "max_iterations", "method_defaults.itermask2.infer.max_iterations"),
    (im2.run_itermask2, "batch_size", "method_defaults.itermask2.infer.batch_size"),
    (im2.run_itermask2, "first_percentile", "method_defaults.itermask2.infer.first_step_percentile"),
    (im2.run_itermask2, "variant", "experiments.itermask2.variant"),
    (im2.phase_a_taus, "batch_size", "method_defaults.itermask2.infer.batch_size"),
    (im2.phase_a_taus, "variant", "experiments.itermask2.variant"),
    (ResUNet3D.__init__, "channels", "method_defaults.itermask3d.network.channels"),
    (ResUNet3D.__init__, "dropout", "method_defaults.itermask3d.network.dropout"),
    (ResUNet3D.__init__, "residual", "method_defaults.itermask3d.network.residual"),
    (ResUNet3D.__init__, "input_skip", "method_defaults.itermask3d.network.input_skip"),
    (AttnResUNet2D.__init__, "channels", "method_defaults.itermask2.network.channels"),
    (AttnResUNet2D.__init__, "attention_res", "method_defaults.itermask2.network.attention_res"),
    (AttnResUNet2D.__init__, "dropout", "method_defaults.itermask2.network.dropout"),
    (AttnResUNet2D.__init__, "num_res_blocks", "method_defaults.itermask2.network.num_res_blocks"),
    (AttnResUNet2D.__init__, "num_heads", "method_defaults.itermask2.network.num_heads"),
    (AttnResUNet2D.__init__, "middle_attention", "method_defaults.itermask2.network.middle_attention"),
]

# keyword defaults of the same functions with no schema counterpart (kept explicit so that a new
# keyword default has to be classified here or in MAPPED)
UNMAPPED = {
    subject_threshold: {"t", "r2_fraction", "window"},
    im3.phase_a_percents: {"fine_step"},  # the reference's 1 % step; no config key
    im3.run_itermask3d: {"device", "amp"},  # device: resolved at run time from config 'device' ("auto")
    im2.run_itermask2: {"device", "amp", "single_step"},  # single_step follows variant no_spatial
    im2.phase_a_taus: {"device", "amp"},
    ResUNet3D.__init__: {"out_channels", "skip_connections"},
    AttnResUNet2D.__init__: {"out_channels", "image_size", "skip_connections"},
}


def _name(func) -> str:
    return func.__qualname__


@pytest.mark.parametrize("func, param, path", MAPPED, ids=[f"{_name(f)}.{p}={s}" for f, p, s in MAPPED])
def test_keyword_default_equals_schema_default(func, param, path):
    """The Python default of `param` equals the schema default at `path`."""
    default = inspect.signature(func).parameters[param].default
    assert default is not inspect.Parameter.empty, f"{_name(func)}({param}) has no default"
    expected = schema_default(path)
    assert _plain(default) == expected, f"{_name(func)}({param}={default!r}) but schema {path} = {expected!r}"
    assert type(_plain(default)) is type(expected) or {type(_plain(default)), type(expected)} <= {int, float}


def test_every_keyword_default_is_classified():
    """Each keyword default of the checked functions is either mapped to a schema key or listed as unmapped."""
    mapped: dict = {}
    for func, param, _ in MAPPED:
        mapped.setdefault(func, set()).add(param)
    for func in set(mapped) | set(UNMAPPED):
        with_default = {name for name, p in inspect.signature(func).parameters.items()
                        if p.default is not inspect.Parameter.empty}
        known = mapped.get(func, set()) | UNMAPPED.get(func, set())
        assert with_default == known, f"{_name(func)}: unclassified {with_default - known}, stale {known - with_default}"


@pytest.mark.parametrize(
    "defaults, section",
    [(net_build.DEFAULTS_3D, "method_defaults.itermask3d.network"),
     (net_build.DEFAULTS_2D, "method_defaults.itermask2.network")],
    ids=["DEFAULTS_3D", "DEFAULTS_2D"],
)
def test_build_network_defaults_equal_schema_defaults(defaults, section):
    """networks.build's per-method defaults equal the schema's network defaults (image_size: no schema key)."""
    schema = schema_default(section)
    assert set(defaults) - {"image_size"} == set(schema)
    for key, value in schema.items():
        assert _plain(defaults[key]) == value, f"{key}: build {defaults[key]!r}, schema {value!r}"
