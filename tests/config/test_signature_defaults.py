"""Library functions carry no default of their own for a config setting: the schema holds them all.

A keyword default that copies a schema default drifts from it unseen (or contradicts it, as a
``device="cpu"`` against the schema's ``auto``), and direct callers (benchmarks, notebooks,
tests) then run with the Python value. Each parameter in MAPPED takes a config setting (the
schema path says which) and must be required; keyword-only unless POSITIONAL says why not. The
other keyword defaults of these functions are listed in NOT_CONFIG, so that a new default has to
be classified. The schema paths must exist: the schema's defaults are filled by the package's
own machinery (``schema.schema_defaults``, through ``support.schema_default``) into a config
with one experiment per method.
"""
from __future__ import annotations

import inspect

import pytest

from itermask.core import iterative_mask_2d as im2
from itermask.core import iterative_mask_3d as im3
from itermask.core.lockstep import reconstruct
from itermask.core.model_input import compose_input
from itermask.core.networks import build as net_build
from itermask.core.networks.unet2d import AttnResUNet2D
from itermask.core.networks.unet3d import ResUNet3D
from itermask.core.oracle import oracle_2d, oracle_3d
from itermask.core.threshold import subject_threshold
from itermask.errors import InputError
from itermask.io import device as io_device
from itermask.methods._baseline import model_spatial_dims
from itermask.methods.itermask2 import run_pooled
from itermask.methods.itermask3d import run_volumes
from itermask.preprocess.skullstrip import deepbet_mask
from support import schema_default
from itermask.training.precision import Precision, pick_precision


I3, I2 = "method_defaults.itermask3d", "method_defaults.itermask2"


# (function, parameter, schema path of the setting it takes)
MAPPED = [
    (subject_threshold, "gamma", f"{I3}.infer.gamma"),
    (subject_threshold, "y_limit", f"{I3}.infer.y_limit"),
    (subject_threshold, "r2_min", f"{I3}.infer.r2_min"),
    (subject_threshold, "no_exceed", f"{I3}.infer.k_fallback"),
    (subject_threshold, "scale_at", f"{I3}.infer.curve_scale_percent"),
    (im3.phase_a_percents, "step_percent", f"{I3}.infer.step_percent"),
    (im3.phase_a_percents, "fine_from", f"{I3}.infer.fine_from_percent"),
    *[(im3.run_itermask3d, p, f"{I3}.infer.{p}")
      for p in ("tol", "max_iterations", "batch_size", "phase_b_noise", "phase_b_start")],
    (im3.run_itermask3d, "variant", "experiments.itermask3d.variant"),
    (im3.run_itermask3d, "device", "device"),
    (im3.run_itermask3d, "amp", "precision"),
    *[(run_volumes, p, f"{I3}.infer.{p}")
      for p in ("tol", "max_iterations", "batch_size", "phase_b_noise", "phase_b_start")],
    (run_volumes, "variant", "experiments.itermask3d.variant"),
    (run_volumes, "device", "device"),
    (run_volumes, "amp", "precision"),
    *[(im2.run_itermask2, p, f"{I2}.infer.{p}") for p in ("tol", "max_iterations", "batch_size")],
    (im2.run_itermask2, "first_percentile", f"{I2}.infer.first_step_percentile"),
    (im2.run_itermask2, "variant", "experiments.itermask2.variant"),
    (im2.run_itermask2, "single_step", "experiments.itermask2.variant"),  # variant no_spatial
    (im2.run_itermask2, "device", "device"),
    (im2.run_itermask2, "amp", "precision"),
    (im2.phase_a_taus, "batch_size", f"{I2}.infer.batch_size"),
    (im2.phase_a_taus, "variant", "experiments.itermask2.variant"),
    (im2.phase_a_taus, "device", "device"),
    (im2.phase_a_taus, "amp", "precision"),
    (run_pooled, "variant", "experiments.itermask2.variant"),
    (run_pooled, "params", f"{I2}.infer"),  # first_step_percentile, tol, max_iterations, batch_size
    (run_pooled, "device", "device"),
    (run_pooled, "amp", "precision"),
    (oracle_3d, "fixed_noise", f"{I3}.infer.phase_b_noise"),
    (oracle_2d, "first_percentiles", f"{I2}.infer.oracle_first_step_percentiles"),
    *[(fn, p, f"{section}.infer.{key}") for fn, section in ((oracle_3d, I3), (oracle_2d, I2))
      for p, key in (("factors", "oracle_tau_factors"), ("tol", "tol"), ("max_iterations", "max_iterations"))],
    *[(fn, "variant", f"experiments.{method}.variant") for fn, method in ((oracle_3d, "itermask3d"), (oracle_2d, "itermask2"))],
    *[(fn, p, key) for fn in (oracle_3d, oracle_2d) for p, key in (("device", "device"), ("amp", "precision"))],
    (reconstruct, "amp", "precision"),
    (compose_input, "variant", "experiments.itermask3d.variant"),
    *[(ResUNet3D.__init__, p, f"{I3}.network.{p}") for p in ("channels", "dropout", "residual", "input_skip")],
    *[(AttnResUNet2D.__init__, p, f"{I2}.network.{p}")
      for p in ("channels", "attention_res", "dropout", "num_res_blocks", "num_heads", "middle_attention")],
    (AttnResUNet2D.__init__, "image_size", "preprocess.slices2d.size"),
    (io_device.resolve_device, "device", "device"),
    (io_device.autocast_dtype, "amp", "precision"),
    (io_device.autocast, "amp", "precision"),
    (io_device.precision_label, "amp", "precision"),
    (io_device.precision_labels, "amp", "precision"),
    (pick_precision, "amp", "precision"),
    (Precision, "amp", "precision"),
    (deepbet_mask, "device", "device"),
    (deepbet_mask, "amp", "precision"),
]

# parameters of MAPPED that may stay positional: callers outside these modules pass them so
# (itermask/training/loop.py, itermask/preprocess/hd_bet.py), or they are the first setting
POSITIONAL = {
    (im3.phase_a_percents, "step_percent"),
    (compose_input, "variant"),
    (io_device.resolve_device, "device"),
    (io_device.autocast_dtype, "amp"),
    (io_device.autocast, "amp"),
    (io_device.precision_label, "amp"),
    (io_device.precision_labels, "amp"),
    (pick_precision, "amp"),
    (Precision, "amp"),
}

# keyword defaults of the same functions that are no config setting
NOT_CONFIG = {
    subject_threshold: {"t", "r2_fraction", "window"},  # t: the curve's own abscissa
    im3.phase_a_percents: {"fine_step"},  # the reference's 1 % step; no config key
    compose_input: {"generator", "noise"},
    ResUNet3D.__init__: {"out_channels", "skip_connections"},  # skip_connections False: the AE
    AttnResUNet2D.__init__: {"out_channels", "skip_connections"},
    io_device.autocast_dtype: {"training", "bf16_supported"},  # bf16_supported: a test's override
    io_device.precision_label: {"training"},
    pick_precision: {"bf16_supported"},
    deepbet_mask: {"threshold"},  # deepbet's own probability threshold; no config key
}


def _name(func) -> str:
    return func.__qualname__


@pytest.mark.parametrize("func, param, path", MAPPED, ids=[f"{_name(f)}.{p}<-{s}" for f, p, s in MAPPED])
def test_a_config_setting_has_no_python_default(func, param, path):
    """`param` takes the setting at schema `path` (which exists): required, keyword-only unless listed."""
    schema_default(path)  # KeyError: the mapping names a setting the schema does not have
    p = inspect.signature(func).parameters[param]
    assert p.default is inspect.Parameter.empty, \
        f"{_name(func)}({param}={p.default!r}): the schema holds the default ({path} = {schema_default(path)!r})"
    if (func, param) not in POSITIONAL:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{_name(func)}({param}) should be keyword-only"


def test_every_keyword_default_is_classified():
    """Each keyword default of the checked functions is listed in NOT_CONFIG (a default for a
    config setting is not allowed: add the parameter to MAPPED without a default)."""
    for func in {f for f, _, _ in MAPPED} | set(NOT_CONFIG):
        with_default = {name for name, p in inspect.signature(func).parameters.items()
                        if p.default is not inspect.Parameter.empty}
        known = NOT_CONFIG.get(func, set())
        assert with_default == known, \
            f"{_name(func)}: unclassified {with_default - known}, stale {known - with_default}"


@pytest.mark.parametrize("method, keys, extra", [("itermask3d", net_build.KEYS_3D, set()),
                                                 ("itermask2", net_build.KEYS_2D, {"image_size"})])
def test_networks_are_built_from_every_schema_network_setting(method, keys, extra):
    """networks.build holds no default values: it needs each of the schema's network settings of
    the method (image_size: the training slices' size, no network setting), and a model file's
    meta without one is an InputError naming it, not a silent Python value."""
    schema = schema_default(f"method_defaults.{method}.network")
    assert set(keys) - extra == set(schema)
    full = {**schema, **{k: 32 for k in extra}}
    for key in keys:
        with pytest.raises(InputError, match=key):
            net_build.network_settings(method, {k: v for k, v in full.items() if k != key})
    assert net_build.network_settings(method, full) == full


def test_a_baseline_model_without_spatial_dims_is_refused():
    """The baselines read ``spatial_dims`` from the model meta, with no fallback to a class value."""
    assert model_spatial_dims({"spatial_dims": 2}, "m.pt") == 2
    with pytest.raises(InputError, match="spatial_dims") as err:
        model_spatial_dims({}, "m.pt")
    assert err.value.path == "m.pt"
