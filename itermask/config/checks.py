"""Checks of meaning that the schema cannot express: references between sections, shared
models, sequences of test datasets, fixed thresholds, 2D attention resolutions, the honest
threshold's source, the kinds of artefact parameters; tables: `itermask.config.table_checks`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from itermask.config.conditions import RESERVED
from itermask.config.table_checks import check_table_references
from itermask.errors import ConfigError

if TYPE_CHECKING:
    from itermask.config.study import Study


def _check_model_from(study: "Study", name: str) -> None:
    exp, key = study.experiments[name], f"experiments.{name}"
    src = exp["model_from"]
    if src not in study.experiments:
        raise ConfigError(f"config key '{key}.model_from': '{src}' is not an experiment")
    src_exp = study.experiments[src]
    if any(src_exp[k] != exp[k] for k in ("dataset", "sequence")):
        raise ConfigError(f"config key '{key}.model_from': '{src}' must have the same dataset and sequence")
    _check_shared_method(study, name, src)
    if "no_freq" in (exp["variant"], src_exp["variant"]) and exp["variant"] != src_exp["variant"]:
        raise ConfigError(f"config key '{key}.model_from': a no_freq model cannot be shared with other variants")
    own, theirs = study.settings(name).hf_radius, study.settings(src).hf_radius
    if own != theirs:
        raise ConfigError(f"config key '{key}.hf_radius': {own} differs from the radius of model_from '{src}' ({theirs})")


def _check_shared_method(study: "Study", name: str, src: str) -> None:
    """The same method, or one of its family (``Method.model_family``: DDPM and AutoDDPM train the
    same network) that does not calibrate anything when training ends: a calibration stored in
    the model file is made on the training method's own map."""
    from itermask import methods

    key, own, theirs = f"experiments.{name}.model_from", study.experiments[name]["method"], study.experiments[src]["method"]
    if own == theirs:
        return
    if not methods.get(own).shares_models_with(methods.get(theirs)):
        raise ConfigError(f"config key '{key}': '{src}' is a '{theirs}' experiment; a '{own}' experiment can use "
                          f"only a model of its own method or of its family")
    if methods.get(own).needs_validation(study.settings(name)):
        raise ConfigError(f"config key '{key}': '{name}' calibrates on validation data when training ends (e.g. "
                          f"infer.mask_threshold_val_percentile), which needs a model trained as '{own}': train its own")


def check_experiment(study: "Study", name: str) -> None:
    """References and settings of one experiment (configured or derived from a sweep)."""
    datasets = study.config["datasets"]
    exp, key = study.experiments[name], f"experiments.{name}"
    if exp["dataset"] not in datasets:
        raise ConfigError(f"config key '{key}.dataset': '{exp['dataset']}' is not a dataset ({', '.join(datasets)})")
    if "model_from" in exp:
        _check_model_from(study, name)
    for kind in ("detect", "segment"):
        for d in (exp[kind] if isinstance(exp[kind], list) else []):
            if d not in datasets:
                raise ConfigError(f"config key '{key}.{kind}': '{d}' is not a dataset")
    s = study.settings(name)
    for d in (s.dataset, *s.segment, *s.detect):
        if s.sequence not in datasets[d]["sequences"]:
            raise ConfigError(f"config key '{key}.sequence': '{s.sequence}' is not a sequence of dataset '{d}'")
    own = datasets[s.dataset]["sequences"]
    for q in study.train_spec(name).sequences:  # e.g. the Cyclic UNet's intermediate sequence
        if q not in own:
            raise ConfigError(f"config key '{key}': method '{s.method}' trains on sequence '{q}' beside '{s.sequence}', but "
                              f"dataset '{s.dataset}' has only {list(own)}: it cannot train this method (add '{q}' "
                              f"to the dataset or choose another, e.g. network.intermediate)")
    _check_detect_artefacts(study, name)


def _check_detect_artefacts(study: "Study", name: str) -> None:
    """The experiment's synthetic artefacts (``detect_artefacts``, null = every type of
    artefacts.types) on its detect datasets' healthy test scans. The artefacts job of a
    (dataset, sequence) writes every type, so a job that runs at all needs a usable
    ``artefacts.other_sequence`` when that is a type, even for an experiment that leaves it out."""
    art, s = study.config["artefacts"], study.settings(name)
    own = study.experiments[name].get("detect_artefacts")
    unknown = sorted(set(own or ()) - set(art["types"]))
    if unknown:
        raise ConfigError(f"config key 'experiments.{name}.detect_artefacts': {unknown} are not in artefacts.types "
                          f"{list(art['types'])}")
    runs = art["types"] if own is None else own
    if not runs or "other_sequence" not in art["types"]:
        return
    other = art.get("other_sequence")
    for d in s.detect:
        if "test_healthy" not in study.datasets[d].splits:
            continue  # no healthy test scans: no synthetic artefacts
        if other is not None and other in study.config["datasets"][d]["sequences"] and other != s.sequence:
            continue
        if "other_sequence" in runs:
            raise ConfigError(f"config key 'artefacts.other_sequence': '{other}' must be another sequence of dataset "
                              f"'{d}' than experiment '{name}''s {s.sequence}, or leave other_sequence out of "
                              f"experiments.{name}.detect_artefacts")
        raise ConfigError(f"config key 'experiments.{name}.detect_artefacts': the artefacts of dataset '{d}' "
                          f"({s.sequence}) are made together, other_sequence included, and artefacts.other_sequence "
                          f"'{other}' is not another sequence of it: set detect_artefacts: [] (no synthetic "
                          "artefacts) or another artefacts.other_sequence")


def check_real_artefacts(study: "Study") -> None:
    """Failed skull-stripping sets and user anomalous datasets (test_anomalous + anomaly)."""
    reserved = {*RESERVED, *study.artefact_conditions()}
    for name, d in list(study.datasets.items()):
        key = f"datasets.{name}"
        if (d.anomaly is None) != ("test_anomalous" not in d.splits):
            raise ConfigError(f"config key '{key}': give 'anomaly' (the condition name) exactly when the dataset has "
                              "split or role 'test_anomalous'")
        if d.anomaly in reserved:
            raise ConfigError(f"config key '{key}.anomaly': '{d.anomaly}' is reserved (one of {sorted(reserved)})")
        derived = study.failed_strip_dataset(name)
        if derived is None:
            continue
        if derived in study.config["datasets"]:
            raise ConfigError(f"config key '{key}.failed_skullstrip_set': its scans form dataset '{derived}', "
                              "which the config already names")
        if d.mask_method != "deepbet":
            raise ConfigError(f"config key '{key}.failed_skullstrip_set': needs brain_mask.method 'deepbet' (one of its "
                              f"tools), got '{d.mask_method}'")
        healthy = d.splits.get("test_healthy", ())
        own = study.failed_skullstrip(name).subjects or ()
        if not healthy or set(own) - set(healthy):
            raise ConfigError(f"config key '{key}.failed_skullstrip_set': candidates must be test_healthy subjects "
                              f"(not {sorted(set(own) - set(healthy)) or 'none: no test_healthy split'})")
    for name in study.experiments:
        detect = study.settings(name).detect
        if any(study.datasets[d].anomaly for d in detect) and not any(
                "test_healthy" in study.datasets[d].splits for d in detect):
            raise ConfigError(f"config key 'experiments.{name}.detect': anomalous datasets are compared with "
                              "the healthy test scans of the other detect datasets; none has test_healthy")


def check_attention_resolutions(study: "Study", name: str) -> None:
    """Attention resolutions (px) of a slice-input network must be UNet levels of the slice size."""
    s = study.settings(name)
    size2d = study.preprocess.slices2d.size
    levels = [size2d // 2**k for k in range(5)]
    bad = [r for r in s.network.get("attention_res", ()) if r not in levels]
    if bad and study.train_spec(name).kind == "slices":
        raise ConfigError(
            f"config key 'experiments.{name}.network.attention_res': {bad} px are not UNet resolutions "
            f"{levels} of {size2d} px slices (preprocess.slices2d.size)"
        )


def check_honest_source(study: "Study") -> None:
    """``evaluation.honest_source: labelled_val`` needs a val_lesion split in every dataset an
    experiment segments (the honest threshold is set per test dataset)."""
    ev = study.config["evaluation"]
    if ev["honest_source"] != "labelled_val" or "honest" not in ev["protocols"]:
        return
    for name in study.experiments:
        for d in study.settings(name).segment:
            if not study.datasets[d].splits.get("val_lesion"):
                raise ConfigError(
                    f"config key 'evaluation.honest_source': 'labelled_val' sets the honest threshold on "
                    f"each segmented dataset's 'val_lesion' split, but dataset '{d}' (segmented by "
                    f"experiment '{name}') has none: add labelled subjects to datasets.{d}.splits.val_lesion "
                    "or use honest_source 'healthy_fpr'")


def check_artefact_params(study: "Study") -> None:
    """``artefacts.params.<type>`` and ``artefacts.severity.<type>.param`` name parameters of the
    artefact implementations: the keys of ``REFERENCE_PARAMS`` (what ``merged_params`` accepts),
    checked here so that a typo fails at parse time, not in every artefacts job."""
    from itermask.artefacts.algorithms import ARTEFACT_TYPES, REFERENCE_PARAMS  # NumPy only

    art = study.config["artefacts"]
    for t, params in art["params"].items():
        where = f"config key 'artefacts.params.{t}'"
        if t not in REFERENCE_PARAMS:
            raise ConfigError(f"{where}: '{t}' is not an artefact type ({', '.join(ARTEFACT_TYPES)})")
        known = sorted(REFERENCE_PARAMS[t])
        if not isinstance(params, dict):
            raise ConfigError(f"{where}: expected a mapping of parameters ({', '.join(known) or 'none'}) "
                              f"to values, got {type(params).__name__}")
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(f"{where}: {unknown} are not parameters of artefact '{t}' (its parameters: "
                              f"{', '.join(known) or 'none'})")
        for key, value in params.items():
            _check_param_kind(f"{where[:-1]}.{key}'", value, REFERENCE_PARAMS[t][key], (t, key))
    for t, sweep in art["severity"].items():
        known = sorted(REFERENCE_PARAMS.get(t, ()))
        if sweep["param"] not in known:
            raise ConfigError(f"config key 'artefacts.severity.{t}.param': '{sweep['param']}' is not a parameter "
                              f"of artefact '{t}' (its parameters: {', '.join(known) or 'none'})")
        for k, value in enumerate(sweep["values"]):
            _check_param_kind(f"config key 'artefacts.severity.{t}.values[{k}]'", value,
                              REFERENCE_PARAMS[t][sweep["param"]], (t, sweep["param"]))


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a list" if isinstance(value, (list, tuple)) else f"a {type(value).__name__}"


#: what an artefact parameter may be besides its reference value's kind (the implementation takes both)
_ALSO_ACCEPTED = {("bias_field", "coefficients"): "a list of two numbers (a range)", ("ghosting", "restore"): "null"}


def _also_accepted(name: tuple[str, str] | None, value: object) -> bool:
    if name == ("ghosting", "restore"):
        return value is None
    if name == ("zipper", "columns"):  # no stripe
        return isinstance(value, (list, tuple)) and not value
    if name == ("bias_field", "coefficients"):
        return isinstance(value, (list, tuple)) and len(value) == 2 and all(_kind(v) == "a number" for v in value)
    return False


def _check_param_kind(where: str, value: object, reference: object, name: tuple[str, str] | None = None) -> None:
    """An artefact parameter is what its reference value is: a number, or a list (of numbers, or
    of lists of numbers), so that a string or a scalar for a list fails at parse time."""
    if _also_accepted(name, value):
        return
    want = _kind(reference)
    if _kind(value) != want:
        also = f" or {_ALSO_ACCEPTED[name]}" if name in _ALSO_ACCEPTED else ""
        raise ConfigError(f"{where}: expected {want}{also} like the reference value {reference!r}, got {value!r}")
    if want == "a list" and isinstance(reference, (list, tuple)) and reference:
        if not value:
            raise ConfigError(f"{where}: expected a non-empty list like the reference value {reference!r}")
        for item in value:  # type: ignore[union-attr]
            _check_param_kind(where, item, reference[0])


def _needs_validation(study: "Study", name: str) -> bool:
    from itermask import methods

    settings = study.settings(name)
    return methods.get(settings.method).needs_validation(settings)


def check_references(study: "Study") -> None:
    """Every check of meaning; adds the sweeps' derived experiments on the way."""
    from itermask.config.sweeps import add_sweeps

    cfg = study.config
    if study.demo_dataset is not None and study.demo_dataset not in cfg["datasets"]:
        raise ConfigError(f"config key 'demo.dataset': '{study.demo_dataset}' is not a dataset")
    art = cfg["artefacts"]
    for t in art["severity"]:
        if t not in art["types"]:
            raise ConfigError(f"config key 'artefacts.severity.{t}': '{t}' is not in artefacts.types")
    check_artefact_params(study)
    if "sensitivity" in cfg["experiments"]:
        raise ConfigError("config key 'experiments.sensitivity': the name is reserved (figures/sensitivity/ "
                          "holds the sweeps' figures)")
    for name in cfg["experiments"]:
        check_experiment(study, name)
    for name in add_sweeps(study):
        check_experiment(study, name)
    from itermask.evaluation.spec import check_table

    for table in cfg["tables"]:
        check_table(table, study.experiments)
    check_table_references(study)
    _ = study.datasets  # resolve datasets now so subject-list problems surface at parse time
    trained = study.trained_experiments()
    for name, exp in study.experiments.items():
        ds = study.datasets[exp["dataset"]]
        if not ds.splits.get("train") and name in trained:
            raise ConfigError(f"config key 'experiments.{name}': dataset '{ds.name}' has no 'train' split")
        if name in trained and not ds.splits.get("val") and _needs_validation(study, name):
            raise ConfigError(f"config key 'experiments.{name}': method '{exp['method']}' with these settings needs "
                              f"healthy validation subjects, but dataset '{ds.name}' has an empty or no 'val' split")
    for name in study.experiments:
        check_attention_resolutions(study, name)
    check_real_artefacts(study)
    check_honest_source(study)
