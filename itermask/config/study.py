"""The study: the validated configuration and everything the workflow derives from it.

`Study(config)` fills the schema's defaults (`validate_schema`), checks the config's meaning
(`itermask.config.checks`), adds the sweeps' experiments (`itermask.config.sweeps`) and answers
the workflow's questions: each experiment's frozen settings, subjects, conditions and inputs.
"""
from __future__ import annotations

import dataclasses
import re
from functools import cached_property
from pathlib import Path
from typing import Iterable

import yaml

from itermask import methods
from itermask.config.checks import check_references
from itermask.config.conditions import HEALTHY, LESION, VAL, VAL_LESION
from itermask.config.datasets import Dataset, resolve_dataset
from itermask.config.experiment_settings import build_settings
from itermask.config.schema import validate_schema
from itermask.config.settings import (
    DemoSettings, EvaluationSettings, ExperimentSettings, FailedSkullstripSettings, PreprocessSettings,
    ResourceSettings,
)
from itermask.errors import ConfigError, Named
from itermask.methods import InputSpec


FAILED_STRIP_SUFFIX = "failedstrip"  # derived dataset <dataset>failedstrip
# a failed-strip candidate's outlying mask (rule failed_skullstrip_masks; rules/common.smk FS_OUTLIER)
FAILED_STRIP_MASK = "{results}/failed_skullstrip/{dataset}/sub-{subject}/outlier_brainmask.nii.gz"


def load_config(path: str | Path) -> dict:
    """Read a YAML configuration file."""
    with open(path) as fh:
        return yaml.safe_load(fh)


class Study:
    """The validated configuration (defaults filled) and everything derived from it.

    ``experiments`` holds the raw entries of the config's experiments plus the experiments
    derived from ``sweeps:``; ``sweeps`` maps (base experiment, param) to {experiment: value}.
    """

    def __init__(self, config: dict, base_dir: str | Path = ".") -> None:
        self.config = validate_schema(config)
        self.base_dir = Path(base_dir)
        self.results = config["results_dir"].rstrip("/")
        self.seed: int = config["seed"]
        self.device: str = config["device"]
        self.preprocess = PreprocessSettings.from_dict(config["preprocess"])
        self.resources = ResourceSettings.from_dict(config["resources"])
        self.evaluation = EvaluationSettings.from_dict(config["evaluation"])
        self.demo = DemoSettings.from_dict(config["demo"]) if "demo" in config else None
        self.tables: dict[str, dict] = Named({t["name"]: t for t in config["tables"]}, kind="table", key="tables")
        self.experiments: dict[str, dict] = Named(config["experiments"], kind="experiment", key="experiments")
        self.sweeps: dict[tuple[str, str], dict[str, float]] = {}
        self._settings: dict[str, ExperimentSettings] = {}
        self._candidates: dict[str, frozenset[str]] = {}  # failed-strip candidates per dataset, for `in`
        check_references(self)

    @property
    def skullstrip_device(self) -> str:
        """Device of the skull-strippers (deepbet, HD-BET): CUDA only with ``device: cuda`` (their
        jobs then request a GPU); ``auto`` and ``cpu`` strip on the CPU, so that a brain mask does
        not depend on whether a cluster job landed on a GPU node."""
        return "cuda" if self.device == "cuda" else "cpu"

    @property
    def skullstrip_gpus(self) -> int:
        """GPUs a skull-stripping job requests (``resources.gpu`` when it strips on CUDA)."""
        return self.resources.gpu if self.skullstrip_device == "cuda" else 0

    @property
    def torch_gpus(self) -> int:
        """GPUs a training or inference job requests: ``resources.gpu``, none with ``device: cpu``."""
        return 0 if self.device == "cpu" else self.resources.gpu

    # -- datasets ---------------------------------------------------------------------
    @property
    def demo_dataset(self) -> str | None:
        return self.demo.dataset if self.demo is not None and self.demo.enabled else None

    @cached_property
    def datasets(self) -> dict[str, Dataset]:
        """The config's datasets, then the derived datasets of failed skull-stripping sets."""
        out = {
            name: resolve_dataset(name, entry, base_dir=self.base_dir, generated=(name == self.demo_dataset))
            for name, entry in self.config["datasets"].items()
        }
        for name in list(out):
            derived = self.failed_strip_dataset(name)
            if derived is not None:
                out[derived] = self._failed_strip_entry(out[name])
        return Named(out, kind="dataset", key="datasets")

    def failed_skullstrip(self, dataset: str) -> FailedSkullstripSettings:
        entries = Named(self.config["datasets"], kind="dataset", key="datasets")  # not derived ones
        return FailedSkullstripSettings.from_dict(entries[dataset]["failed_skullstrip_set"])

    def failed_strip_dataset(self, dataset: str) -> str | None:
        """The derived dataset holding `dataset`'s failed-strip scans (None: no such set).

        Its subjects are the set's candidates, its images those of `dataset`, its brain mask
        each candidate's outlying mask (``FAILED_STRIP_MASK``): the preprocessing rules
        resample and normalise them as any scan (itermask.artefacts.failed_skullstrip)."""
        entry = self.config["datasets"].get(dataset)
        return f"{dataset}{FAILED_STRIP_SUFFIX}" if entry and entry["failed_skullstrip_set"]["enabled"] else None

    def failed_strip_candidates(self, dataset: str) -> tuple[str, ...]:
        """The set's candidates: its `subjects`, else every test_healthy subject."""
        derived = self.failed_strip_dataset(self.datasets[dataset].name)  # unknown: UnknownName
        if derived is None:
            raise ConfigError(f"dataset '{dataset}' has no failed skull-stripping set (failed_skullstrip_set.enabled)")
        return self.datasets[derived].splits["test_healthy"]

    def _failed_strip_entry(self, d: Dataset) -> Dataset:
        own = self.failed_skullstrip(d.name).subjects
        return dataclasses.replace(
            d, name=f"{d.name}{FAILED_STRIP_SUFFIX}", label_pattern=None, mask_method="pattern",
            mask_pattern=FAILED_STRIP_MASK.format(results=self.results, dataset=d.name, subject="{subject}"),
            splits={"test_healthy": own if own is not None else tuple(d.splits.get("test_healthy", ()))},
            labelled_splits=(), anomaly=None,
        )

    # -- experiments ------------------------------------------------------------------
    def settings(self, name: str) -> ExperimentSettings:
        """Frozen settings of an experiment (cached): ``itermask.config.experiment_settings``."""
        if name not in self._settings:
            self._settings[name] = build_settings(self, name)
        return self._settings[name]

    def training_settings(self, name: str) -> ExperimentSettings:
        """The settings its training job reads (``ExperimentSettings.for_training``)."""
        s = self.settings(name)
        return s.for_training(methods.get(s.method).training_infer_keys)

    def train_spec(self, name: str) -> InputSpec:
        s = self.settings(name)
        return methods.get(s.method).train_inputs(s)

    def condition_spec(self, name: str, condition: str) -> InputSpec:
        s = self.settings(name)
        return methods.get(s.method).condition_inputs(s, condition)

    def method_files(self, name: str, stage: str) -> list[str]:
        """Files the method's ``stage`` ("train" or "infer") job reads besides its items."""
        s, m = self.settings(name), methods.get(self.settings(name).method)
        return {"train": m.training_files, "infer": m.inference_files}[stage](s)

    def setting(self, name: str, param: str) -> float:
        """Value of a sweepable setting (`itermask.config.sweeps.SWEEP_PARAMS`) of an experiment."""
        s = self.settings(name)
        return float(s.hf_radius if param == "hf_radius" else s.infer[param])

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

    # -- artefacts and conditions -----------------------------------------------------
    def artefact_conditions(self, experiment: str | None = None) -> list[str]:
        """Artefact names: each type, plus '<type>-s<k>' for every severity level; with
        ``experiment``, those of the types it runs (its ``detect_artefacts``; null: every type)."""
        art = self.config["artefacts"]
        names = list(art["types"])
        for t, sweep in art["severity"].items():
            names += [f"{t}-s{k}" for k in range(len(sweep["values"]))]
        own = None if experiment is None else self.experiments[experiment].get("detect_artefacts")
        return names if own is None else [n for n in names if n.partition("-")[0] in own]

    def artefact_params(self, name: str) -> tuple[str, dict]:
        """(type, every parameter) of an artefact condition name: the config's over the type's
        reference parameters (rule artefacts' params, so a changed reference value reruns it)."""
        from itermask.artefacts.algorithms import merged_params  # NumPy only

        art = self.config["artefacts"]
        m = re.fullmatch(r"(?P<t>[a-z_0-9]+?)(?:-s(?P<k>\d+))?", name)
        if not m:
            raise ConfigError(f"unknown artefact condition '{name}'")
        kind = m.group("t")
        params = dict(art["params"].get(kind, {}))  # types without params use the reference ones
        if m.group("k") is not None:
            sweep = art["severity"][kind]
            params[sweep["param"]] = sweep["values"][int(m.group("k"))]
        return kind, merged_params(kind, params)

    def conditions(self, name: str, dataset: str, subject: str) -> list[str]:
        """Inference conditions of one subject for one experiment."""
        s = self.settings(name)
        split = self.datasets[dataset].split_of(subject)
        out: list[str] = []
        if dataset == s.dataset and split == "val":
            out.append(VAL)
        if split == "val_lesion" and dataset in s.segment:
            out.append(VAL_LESION)
        if split == "test_lesion" and dataset in s.segment:
            out.append(LESION)
        if split == "test_healthy" and dataset in s.detect:
            out.append(HEALTHY)
            out.extend(self.artefact_conditions(name))
        if split == "test_anomalous" and dataset in s.detect:
            out.append(self.datasets[dataset].anomaly)
        return out

    def failed_strip_candidate(self, name: str, dataset: str, subject: str) -> bool:
        """May the subject get condition `failed_skullstrip` (when the set selects it)?"""
        if dataset not in self.settings(name).detect or self.failed_strip_dataset(dataset) is None:
            return False
        if dataset not in self._candidates:  # asked per subject and experiment: a set, not a tuple scan
            self._candidates[dataset] = frozenset(self.failed_strip_candidates(dataset))
        return subject in self._candidates[dataset]

    def inference_subjects(self, name: str) -> list[tuple[str, str]]:
        """(dataset, subject) pairs an experiment runs inference on."""
        s = self.settings(name)
        pairs = []
        for d in dict.fromkeys((s.dataset, *s.segment, *s.detect)):
            pairs += [(d, subj) for subj in self.datasets[d].subjects if self.conditions(name, d, subj)]
        return pairs


def iter_files(study: Study) -> Iterable[tuple[str, str, str | None, str]]:
    """(dataset, subject, sequence or None, path) of every input file the study reads."""
    for ds in study.datasets.values():
        for s in ds.subjects:
            for seq in ds.sequences:
                yield ds.name, s, seq, ds.image(s, seq)
            label = ds.label(s)
            if label:
                yield ds.name, s, None, label

