"""Configuration: JSON-schema validation with clear messages, datasets, splits and experiments.

`load_config` / `validate_config` check the structure (schema) and the meaning (references
between sections, subject lists, patterns). `Study` answers the questions the workflow asks:
which subjects, which files, which conditions each experiment evaluates.

Sensitivity sweeps (config `sweeps:`) add derived experiments, named by `sweep_name`:
``<experiment>__<param>_<value>`` with the value's decimal point written 'p'
(``im2_flair__tau_percentile_60``, ``im3d_flair_seg__gamma_0p05``). `tau_percentile` and
`gamma` sweeps reuse the base experiment's model (`model_from`) and override `infer`;
`hf_radius` sweeps train one model per value (experiment-level `hf_radius`). Derived
experiments only segment (no detection runs); a value equal to the base experiment's own
setting adds no experiment (the base stands for it).
"""
from __future__ import annotations

import copy
import glob
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from itermask.errors import ConfigError

SPLITS = ("train", "val", "test_healthy", "test_lesion")
SUBJECT_RE = re.compile(r"^[A-Za-z0-9]+$")
SWEEP_PARAMS = ("tau_percentile", "hf_radius", "gamma")
SWEEP_METHOD = {"tau_percentile": "itermask2", "gamma": "itermask3d"}  # hf_radius: both
DEFAULT_HF_RADIUS = 15
DEFAULT_TAU_PERCENTILE = 80.0  # itermask.training.loop's calibration default
DEFAULT_GAMMA = 0.01  # itermask.inference.stage's default


def load_schema() -> dict:
    """The configuration's JSON schema (shipped inside the package)."""
    text = resources.files("itermask").joinpath("config/schema.yaml").read_text()
    return yaml.safe_load(text)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One readable line for a schema error: the key, what was expected, what was found."""
    key = _key_path(error)
    v = error.validator
    if v == "type":
        return f"config key '{key}': expected {error.validator_value}, got {type(error.instance).__name__} {error.instance!r}"
    if v == "enum":
        return f"config key '{key}': {error.instance!r} is not one of {error.validator_value}"
    if v == "required":
        return f"config key '{key}': {error.message}"
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"config key '{key}': {error.message}" + (f" (allowed keys: {', '.join(allowed)})" if allowed else "")
    if v in ("oneOf", "anyOf"):
        return f"config key '{key}': {error.instance!r} does not match any allowed form ({error.schema.get('description', 'see the schema')})"
    return f"config key '{key}': {error.message}"


def validate_schema(config: dict) -> None:
    """Raise ConfigError listing every schema violation (key path + expectation)."""
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n  ".join(_describe(e) for e in errors)
        raise ConfigError(f"invalid configuration ({len(errors)} problem(s)):\n  {lines}")


def deep_merge(base: dict, override: dict) -> dict:
    """Return `base` updated recursively with `override` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def bids_pattern(bids: dict) -> str:
    """Image path pattern of a BIDS raw dataset with entity filters (session, acquisition, run)."""
    root = bids["root"].rstrip("/")
    entities = ""
    folder = "sub-{subject}"
    if "session" in bids:
        folder += f"/ses-{bids['session']}"
        entities += f"_ses-{bids['session']}"
    if "acquisition" in bids:
        entities += f"_acq-{bids['acquisition']}"
    if "run" in bids:
        entities += f"_run-{bids['run']}"
    datatype = bids.get("datatype", "anat")
    return f"{root}/{folder}/{datatype}/sub-{{subject}}{entities}_{{sequence}}.nii.gz"


def format_pattern(pattern: str, **values: str) -> str:
    """Fill `{name}` placeholders of a path pattern, leaving no placeholder unfilled."""
    out = pattern
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    if re.search(r"\{[A-Za-z_]+\}", out):
        raise ConfigError(f"pattern '{pattern}' has a placeholder not filled by {sorted(values)}")
    return out


def glob_subjects(pattern: str, sequence: str) -> list[str]:
    """Subjects whose file exists for `pattern` (with `{subject}`), sorted.

    `{subject}` may occur more than once (``sub-{subject}/anat/sub-{subject}_T1w.nii.gz``):
    every occurrence must then be the same ID.
    """
    filled = pattern.replace("{sequence}", sequence)
    first, *rest = re.escape(filled).split(re.escape("{subject}"))
    regex = first + "".join(
        ("(?P<subject>[A-Za-z0-9]+)" if i == 0 else "(?P=subject)") + part for i, part in enumerate(rest)
    )
    found = set()
    for path in glob.glob(filled.replace("{subject}", "*")):
        m = re.fullmatch(regex, path)
        if m:
            found.add(m.group("subject"))
    return sorted(found)


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


@dataclass(frozen=True)
class Dataset:
    """One dataset entry of the configuration, with its subjects resolved."""

    name: str
    pattern: str
    label_pattern: str | None
    sequences: tuple[str, ...]
    mask_method: str
    mask_sequence: str
    mask_pattern: str | None
    splits: dict[str, tuple[str, ...]]
    labelled_splits: tuple[str, ...] = ("test_lesion",)
    sequence_names: tuple[tuple[str, str], ...] = ()

    @property
    def subjects(self) -> list[str]:
        out: list[str] = []
        for split in SPLITS:
            out.extend(self.splits.get(split, ()))
        return out

    def split_of(self, subject: str) -> str:
        for split, subjects in self.splits.items():
            if subject in subjects:
                return split
        raise KeyError(f"subject '{subject}' is not in dataset '{self.name}'")

    def image(self, subject: str, sequence: str) -> str:
        return format_pattern(self.pattern, subject=subject, sequence=dict(self.sequence_names).get(sequence, sequence))

    def label(self, subject: str) -> str | None:
        """Label file of a subject in a labelled split (default: test_lesion), else None."""
        if self.label_pattern is None or self.split_of(subject) not in self.labelled_splits:
            return None
        return format_pattern(self.label_pattern, subject=subject)

    def mask_file(self, subject: str) -> str | None:
        if self.mask_method != "pattern":
            return None
        seq = dict(self.sequence_names).get(self.mask_sequence, self.mask_sequence)
        return format_pattern(self.mask_pattern or "", subject=subject, sequence=seq)


def _read_split(name: str, split: str, value: Any, base_dir: Path) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(value)
    path = Path(value)
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise ConfigError(f"dataset '{name}': split '{split}' file '{value}' does not exist")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    bad = [s for s in ids if not SUBJECT_RE.match(s)]
    if bad:
        raise ConfigError(
            f"dataset '{name}': split file '{value}' has invalid subject IDs {bad[:5]} (letters and digits only)"
        )
    return tuple(ids)


def resolve_dataset(name: str, entry: dict, *, base_dir: Path, generated: bool = False) -> Dataset:
    """Build a Dataset from its config entry, checking patterns and subject lists.

    `generated` datasets (the demo) are produced by the pipeline, so their files are not
    expected to exist yet and their subjects must be listed explicitly.
    """
    if ("pattern" in entry) == ("bids" in entry):
        raise ConfigError(f"dataset '{name}': give exactly one of 'pattern' or 'bids'")
    pattern = entry["pattern"] if "pattern" in entry else bids_pattern(entry["bids"])
    sequences = tuple(entry["sequences"])
    reserved = sorted({"label", "brainmask"} & set(sequences))
    if reserved:
        raise ConfigError(f"dataset '{name}': {reserved} cannot be sequence names (reserved for output files)")
    if "{subject}" not in pattern:
        raise ConfigError(f"dataset '{name}': pattern '{pattern}' must contain '{{subject}}'")
    if len(sequences) > 1 and "{sequence}" not in pattern:
        raise ConfigError(
            f"dataset '{name}': pattern '{pattern}' must contain '{{sequence}}' because it has {len(sequences)} sequences"
        )
    label_pattern = entry.get("label_pattern")
    if label_pattern is not None and "{subject}" not in label_pattern:
        raise ConfigError(f"dataset '{name}': label_pattern '{label_pattern}' must contain '{{subject}}'")
    mask = entry["brain_mask"]
    mask_sequence = mask.get("sequence", sequences[0])
    if mask_sequence not in sequences:
        raise ConfigError(
            f"dataset '{name}': brain_mask.sequence '{mask_sequence}' is not one of its sequences {list(sequences)}"
        )
    if mask["method"] == "pattern" and "pattern" not in mask:
        raise ConfigError(f"dataset '{name}': brain_mask.method 'pattern' needs brain_mask.pattern")

    if "splits" in entry:
        splits = {s: _read_split(name, s, v, base_dir) for s, v in entry["splits"].items()}
    elif "role" in entry:
        if generated:
            raise ConfigError(f"dataset '{name}': a generated dataset must list its subjects in 'splits'")
        first = entry.get("sequence_names", {}).get(sequences[0], sequences[0])
        found = glob_subjects(pattern, first)
        if not found:
            raise ConfigError(f"dataset '{name}': pattern '{pattern.replace('{sequence}', first)}' matches no file")
        splits = {entry["role"]: tuple(found)}
    else:
        raise ConfigError(f"dataset '{name}': give 'splits' (subject lists) or 'role' (glob the pattern)")

    seen: dict[str, str] = {}
    for split, subjects in splits.items():
        for s in subjects:
            if s in seen:
                where = f"splits '{seen[s]}' and '{split}'" if seen[s] != split else f"split '{split}'"
                raise ConfigError(f"dataset '{name}': duplicate subject ID '{s}' in {where}")
            seen[s] = split
    if not seen:
        raise ConfigError(f"dataset '{name}': no subjects")
    if label_pattern is None and splits.get("test_lesion"):
        raise ConfigError(f"dataset '{name}': subjects in split 'test_lesion' need a 'label_pattern'")
    return Dataset(
        name=name,
        pattern=pattern,
        label_pattern=label_pattern,
        sequences=sequences,
        mask_method=mask["method"],
        mask_sequence=mask_sequence,
        mask_pattern=mask.get("pattern"),
        splits=splits,
        labelled_splits=tuple(entry.get("labelled_splits", ("test_lesion",))),
        sequence_names=tuple(entry.get("sequence_names", {}).items()),
    )


class Study:
    """The validated configuration and everything derived from it.

    `experiments` holds the raw entries of the config's experiments plus the experiments
    derived from `sweeps:`; every method below works on it.
    """

    def __init__(self, config: dict, base_dir: str | Path = ".") -> None:
        validate_schema(config)
        self.config = config
        self.base_dir = Path(base_dir)
        self.results = config["results_dir"].rstrip("/")
        self.experiments: dict[str, dict] = dict(config["experiments"])
        # (base experiment, param) -> {experiment: value}, the base at its own value first
        self.sweeps: dict[tuple[str, str], dict[str, float]] = {}
        self._check_references()

    # -- datasets ---------------------------------------------------------------------
    @property
    def demo_dataset(self) -> str | None:
        demo = self.config.get("demo", {})
        return demo.get("dataset") if demo.get("enabled") else None

    @cached_property
    def datasets(self) -> dict[str, Dataset]:
        return {
            name: resolve_dataset(name, entry, base_dir=self.base_dir, generated=(name == self.demo_dataset))
            for name, entry in self.config["datasets"].items()
        }

    # -- experiments ------------------------------------------------------------------
    def experiment(self, name: str) -> dict:
        """Experiment settings: method defaults deep-merged with the experiment's own keys."""
        exp = self.experiments[name]
        defaults = self.config["method_defaults"].get(exp["method"], {})
        merged = deep_merge(defaults, exp)
        merged.setdefault("variant", "full")
        merged.setdefault("detect", False)
        merged.setdefault("segment", True)
        merged["name"] = name
        return merged

    def stored_hf_radius(self, name: str) -> int:
        """Radius of the preprocessed HF images an experiment reads (2D slices or volumes)."""
        pre = self.config["preprocess"]
        if self.experiments[name]["method"] == "itermask2":
            return int(pre.get("slices2d", {}).get("hf_radius", DEFAULT_HF_RADIUS))
        return int(pre.get("hf_radius", DEFAULT_HF_RADIUS))

    def hf_radius(self, name: str) -> int:
        """The experiment's HF radius r: its `hf_radius`, else that of the preprocessed HF."""
        exp = self.experiments[name]
        return int(exp["hf_radius"]) if "hf_radius" in exp else self.stored_hf_radius(name)

    def setting(self, name: str, param: str) -> float:
        """Value of a sweepable setting (`SWEEP_PARAMS`) for an experiment, defaults applied."""
        if param == "hf_radius":
            return float(self.hf_radius(name))
        default = {"tau_percentile": DEFAULT_TAU_PERCENTILE, "gamma": DEFAULT_GAMMA}[param]
        return float(self.experiment(name).get("infer", {}).get(param, default))

    def model_experiment(self, name: str) -> str:
        """The experiment whose trained model `name` uses (follows model_from)."""
        seen = [name]
        while "model_from" in self.experiments[seen[-1]]:
            nxt = self.experiments[seen[-1]]["model_from"]
            if nxt in seen:
                raise ConfigError(f"experiments: model_from cycle {' -> '.join(seen + [nxt])}")
            seen.append(nxt)
        return seen[-1]

    def trained_experiments(self) -> list[str]:
        return sorted({self.model_experiment(e) for e in self.experiments})

    def sweep_members(self, experiment: str, param: str) -> dict[str, float]:
        """Experiments of one sweep (the base at its own value included) -> swept value."""
        try:
            return dict(self.sweeps[(experiment, param)])
        except KeyError:
            raise ConfigError(f"no sweep of '{param}' for experiment '{experiment}' in config 'sweeps'") from None

    def test_datasets(self, name: str, kind: str) -> list[str]:
        """Datasets an experiment runs on for `kind` ('detect' or 'segment')."""
        exp = self.experiment(name)
        value = exp.get(kind, False)
        if value is True:
            return [exp["dataset"]]
        if value is False:
            return []
        return list(value)

    def artefact_conditions(self) -> list[str]:
        """Artefact names: each type, plus '<type>-s<k>' for every severity level."""
        art = self.config.get("artefacts", {})
        names = list(art.get("types", []))
        for t, sweep in art.get("severity", {}).items():
            names += [f"{t}-s{k}" for k in range(len(sweep["values"]))]
        return names

    def artefact_params(self, name: str) -> tuple[str, dict]:
        """(type, merged params) of an artefact condition name."""
        art = self.config.get("artefacts", {})
        m = re.fullmatch(r"(?P<t>[a-z_0-9]+?)(?:-s(?P<k>\d+))?", name)
        if not m:
            raise ConfigError(f"unknown artefact condition '{name}'")
        kind = m.group("t")
        params = dict(art.get("params", {}).get(kind, {}))
        if m.group("k") is not None:
            sweep = art["severity"][kind]
            params[sweep["param"]] = sweep["values"][int(m.group("k"))]
        return kind, params

    def conditions(self, name: str, dataset: str, subject: str) -> list[str]:
        """Inference conditions of one subject for one experiment."""
        exp = self.experiment(name)
        ds = self.datasets[dataset]
        split = ds.split_of(subject)
        out: list[str] = []
        if dataset == exp["dataset"] and split == "val":
            out.append("val")
        if split == "test_lesion" and dataset in self.test_datasets(name, "segment"):
            out.append("lesion")
        if split == "test_healthy" and dataset in self.test_datasets(name, "detect"):
            out.append("healthy")
            out.extend(self.artefact_conditions())
        return out

    def inference_subjects(self, name: str) -> list[tuple[str, str]]:
        """(dataset, subject) pairs an experiment runs inference on."""
        exp = self.experiment(name)
        datasets = [exp["dataset"]] + self.test_datasets(name, "segment") + self.test_datasets(name, "detect")
        pairs = []
        for d in dict.fromkeys(datasets):
            for s in self.datasets[d].subjects:
                if self.conditions(name, d, s):
                    pairs.append((d, s))
        return pairs

    # -- sweeps -----------------------------------------------------------------------
    def _derived_entry(self, base: str, param: str, value: float) -> dict:
        """Raw experiment entry of `base` with `param` = `value` (see the module docstring)."""
        entry = copy.deepcopy(self.experiments[base])
        entry["detect"] = False
        entry["label"] = f"{entry.get('label', base)} ({param} {value:g})"
        if param == "hf_radius":
            owner = self.experiments[self.model_experiment(base)]
            entry.pop("model_from", None)
            for key in ("network", "train"):  # train as the model the base uses was trained
                if key in owner:
                    entry[key] = copy.deepcopy(owner[key])
                else:
                    entry.pop(key, None)
            entry["hf_radius"] = int(value)
        else:
            entry["model_from"] = base
            entry["infer"] = {**entry.get("infer", {}), param: value}
        return entry

    def _add_sweeps(self) -> list[str]:
        """Add the experiments of config `sweeps:`; return the derived names."""
        derived: list[str] = []
        for i, sweep in enumerate(self.config.get("sweeps", [])):
            base, param, values = sweep["experiment"], sweep["param"], sweep["values"]
            where = f"config key 'sweeps.{i}'"
            if base not in self.config["experiments"]:
                raise ConfigError(f"{where}.experiment: '{base}' is not an experiment")
            if (base, param) in self.sweeps:
                raise ConfigError(f"{where}: a second sweep of '{param}' for '{base}' (give all values in one)")
            exp = self.experiment(base)
            if param in SWEEP_METHOD and exp["method"] != SWEEP_METHOD[param]:
                raise ConfigError(f"{where}.param: '{param}' is a setting of {SWEEP_METHOD[param]}, "
                                  f"'{base}' is {exp['method']}")
            if param == "hf_radius" and exp["variant"] == "no_freq":
                raise ConfigError(f"{where}.param: '{base}' is a no_freq experiment: it has no HF input")
            if not self.test_datasets(base, "segment"):
                raise ConfigError(f"{where}.experiment: '{base}' does not segment (segment: false); "
                                  "sweeps compare segmentation")
            for v in values:
                if param == "tau_percentile" and not (float(v).is_integer() and 1 <= v <= 99):
                    raise ConfigError(f"{where}.values: tau_percentile {v!r} must be an integer 1..99 "
                                      "(training stores the validation error quantiles at integer percentiles)")
                if param == "hf_radius" and not float(v).is_integer():
                    raise ConfigError(f"{where}.values: hf_radius {v!r} must be an integer")
                if param == "gamma" and v <= 0:
                    raise ConfigError(f"{where}.values: gamma {v!r} must be > 0")
            own = self.setting(base, param)
            members = {base: own}
            for v in values:
                if float(v) == own:
                    continue  # the base experiment is this point
                name = sweep_name(base, param, v)
                if name in self.experiments:
                    raise ConfigError(f"{where}.values: derived experiment '{name}' already exists "
                                      "(repeated value, or an experiment of that name)")
                self.experiments[name] = self._derived_entry(base, param, v)
                members[name] = float(v)
                derived.append(name)
            self.sweeps[(base, param)] = members
        return derived

    # -- checks -----------------------------------------------------------------------
    def _check_experiment(self, name: str) -> None:
        cfg = self.config
        datasets = cfg["datasets"]
        art = cfg.get("artefacts", {})
        exp = self.experiments[name]
        where = f"config key 'experiments.{name}'"
        if exp["dataset"] not in datasets:
            raise ConfigError(f"{where}.dataset: '{exp['dataset']}' is not a dataset ({', '.join(datasets)})")
        if exp["method"] not in cfg["method_defaults"]:
            raise ConfigError(f"{where}.method: no method_defaults.{exp['method']} section")
        if "model_from" in exp:
            src = exp["model_from"]
            if src not in self.experiments:
                raise ConfigError(f"{where}.model_from: '{src}' is not an experiment")
            src_exp = self.experiments[src]
            same = ("method", "dataset", "sequence")
            if any(src_exp.get(k) != exp.get(k) for k in same):
                raise ConfigError(f"{where}.model_from: '{src}' must have the same method, dataset and sequence")
            if exp.get("variant", "full") == "no_freq" or src_exp.get("variant", "full") == "no_freq":
                if exp.get("variant", "full") != src_exp.get("variant", "full"):
                    raise ConfigError(f"{where}.model_from: a no_freq model cannot be shared with other variants")
            if self.hf_radius(name) != self.hf_radius(src):
                raise ConfigError(f"{where}.hf_radius: {self.hf_radius(name)} differs from the radius of "
                                  f"model_from '{src}' ({self.hf_radius(src)})")
        for kind in ("detect", "segment"):
            value = exp.get(kind, False)
            for d in (value if isinstance(value, list) else []):
                if d not in datasets:
                    raise ConfigError(f"{where}.{kind}: '{d}' is not a dataset")
        merged = self.experiment(name)
        for d in [exp["dataset"]] + self.test_datasets(name, "segment") + self.test_datasets(name, "detect"):
            if exp["sequence"] not in datasets[d]["sequences"]:
                raise ConfigError(f"{where}.sequence: '{exp['sequence']}' is not a sequence of dataset '{d}'")
        infer = merged.get("infer", {})
        if merged["method"] == "itermask3d" and infer.get("threshold") == "fixed" and infer.get("fixed_tau") is None:
            if "model_from" not in exp:
                raise ConfigError(
                    f"{where}.infer: threshold 'fixed' needs fixed_tau or model_from (its validation taus give the median)"
                )
        if self.test_datasets(name, "detect") and "other_sequence" in art.get("types", []):
            other = art.get("other_sequence")
            for d in self.test_datasets(name, "detect"):
                if other is None or other not in datasets[d]["sequences"] or other == exp["sequence"]:
                    raise ConfigError(
                        f"config key 'artefacts.other_sequence': '{other}' must be another sequence of dataset '{d}'"
                    )

    def _check_references(self) -> None:
        cfg = self.config
        datasets = cfg["datasets"]
        if self.demo_dataset is not None and self.demo_dataset not in datasets:
            raise ConfigError(f"config key 'demo.dataset': '{self.demo_dataset}' is not a dataset")
        art = cfg.get("artefacts", {})
        for t in art.get("severity", {}):
            if t not in art.get("types", []):
                raise ConfigError(f"config key 'artefacts.severity.{t}': '{t}' is not in artefacts.types")
        if "sensitivity" in cfg["experiments"]:
            raise ConfigError("config key 'experiments.sensitivity': the name is reserved (figures/sensitivity/ "
                              "holds the sweeps' figures)")
        for name in cfg["experiments"]:
            self._check_experiment(name)
        for name in self._add_sweeps():
            self._check_experiment(name)
        for table in cfg.get("tables", []):
            for e in table["experiments"]:
                if e not in self.experiments:
                    raise ConfigError(f"config key 'tables' ({table['name']}): '{e}' is not an experiment")
        # resolve datasets now so subject-list problems surface at parse time
        _ = self.datasets
        trained = self.trained_experiments()
        for name, exp in self.experiments.items():
            ds = self.datasets[exp["dataset"]]
            if not ds.splits.get("train") and name in trained:
                raise ConfigError(f"config key 'experiments.{name}': dataset '{ds.name}' has no 'train' split")
        size2d = self.config["preprocess"].get("slices2d", {}).get("size", 128)
        levels = [size2d // 2**k for k in range(5)]
        for name in self.experiments:
            exp = self.experiment(name)
            bad = [r for r in exp.get("network", {}).get("attention_res", []) if r not in levels]
            if exp["method"] == "itermask2" and bad:
                raise ConfigError(
                    f"config key 'experiments.{name}.network.attention_res': {bad} px are not UNet resolutions "
                    f"{levels} of {size2d} px slices (preprocess.slices2d.size)"
                )


def load_config(path: str | Path) -> dict:
    """Read a YAML configuration file."""
    with open(path) as fh:
        return yaml.safe_load(fh)


def iter_files(study: Study) -> Iterable[tuple[str, str, str | None, str]]:
    """(dataset, subject, sequence or None, path) of every input file the study reads."""
    for ds in study.datasets.values():
        for s in ds.subjects:
            for seq in ds.sequences:
                yield ds.name, s, seq, ds.image(s, seq)
            label = ds.label(s)
            if label:
                yield ds.name, s, None, label
