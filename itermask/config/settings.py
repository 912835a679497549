"""Typed, frozen settings per experiment, built once from the validated configuration.

The JSON schema (``itermask/config/schema.yaml``) holds every default; ``Study`` fills them
while validating and builds these objects. Stage functions take them (or plain required
arguments) and carry no defaults of their own.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping


def freeze(value: Any) -> Any:
    """Read-only copy: dicts become MappingProxyType, lists tuples (recursively)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain JSON-able copy of a frozen value (mappings -> dict, tuples -> list)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class TrainSettings:
    """The shared training loop's settings (schema ``train``; defaults per method there)."""

    steps: int | None
    epochs: int | None
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    lr_drop_at: float | None
    lr_after_drop: float | None
    rot90_p: float
    rot90_axes: tuple[int, int]
    fixed_masks: bool
    checkpoint_every: int
    ema: float | None
    ema_warmup: bool

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainSettings":
        values = {f.name: d[f.name] for f in fields(cls)}
        values["rot90_axes"] = tuple(values["rot90_axes"])
        return cls(**values)


@dataclass(frozen=True)
class ExperimentSettings:
    """One experiment: method defaults deep-merged with the experiment's keys, every default filled.

    ``model_owner``: the experiment whose trained model this one uses (``model_from`` followed
    to its end; the experiment itself when it trains its own). ``hf_radius``: the radius of
    the model's high-frequency input (the experiment's ``hf_radius``, else the preprocessing
    radius of the method's input kind). ``detect``/``segment``: the test datasets.
    ``network``/``infer``: the method's own sections, read-only mappings with every key.
    """

    name: str
    method: str
    dataset: str
    sequence: str
    variant: str
    label: str
    model_owner: str
    hf_radius: int
    detect: tuple[str, ...]
    segment: tuple[str, ...]
    network: Mapping[str, Any]
    train: TrainSettings
    infer: Mapping[str, Any]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for Snakemake params and JSON records); ``from_dict`` inverts it."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["train"] = asdict(self.train)
        return thaw(d)

    def for_training(self, infer_keys: Iterable[str] | None) -> "ExperimentSettings":
        """What a training job reads: no test sets or table label (they do not change the model),
        and only the ``infer`` keys in ``infer_keys`` (the method's ``training_infer_keys``; None:
        all). Rule train's params are this view, so a change elsewhere does not retrain; a key
        the training job reads but the method leaves out is a KeyError, never a stale model."""
        infer = self.infer if infer_keys is None else {k: self.infer[k] for k in infer_keys}
        return replace(self, label="", detect=(), segment=(), infer=freeze(infer))

    def for_inference(self) -> "ExperimentSettings":
        """What an inference job reads: no test sets or table label. Rule infer's params are this
        view, so renaming a row reruns no inference, and a test set added to ``detect`` /
        ``segment`` runs only its new subjects (with one subject per job; README)."""
        return replace(self, label="", detect=(), segment=())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ExperimentSettings":
        values = {f.name: d[f.name] for f in fields(cls)}
        values["train"] = TrainSettings.from_dict(d["train"])
        values["detect"], values["segment"] = tuple(d["detect"]), tuple(d["segment"])
        values["network"], values["infer"] = freeze(d["network"]), freeze(d["infer"])
        return cls(**values)


def _section(cls: type, d: Mapping[str, Any]) -> Any:
    """Build a frozen section dataclass from its (defaults filled) config mapping."""
    return cls(**{f.name: freeze(d[f.name]) for f in fields(cls)})


class Section:
    """Base of the frozen config sections: ``from_dict`` reads every field from the mapping."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        return _section(cls, d)


@dataclass(frozen=True)
class Slices2dSettings:
    """``preprocess.slices2d``: the 2D slice files of slice-input methods."""

    size: int
    field_of_view_mm: float
    train_range_fraction: tuple[float, float]
    hf_radius: int


@dataclass(frozen=True)
class PreprocessSettings:
    """``preprocess``: target grid, iterative z-score, the HF radius the preprocess_subject rule writes."""

    spacing_mm: float
    box: tuple[int, int, int]
    zscore_repeats: int
    zscore_clip_sd: float
    background: str | float
    hf_radius: int
    slices2d: Slices2dSettings

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PreprocessSettings":
        return _section(cls, {**d, "slices2d": _section(Slices2dSettings, d["slices2d"])})


@dataclass(frozen=True)
class ResourceSettings(Section):
    """``resources``: cluster requests of the heavy rules (runtime in minutes)."""

    gpu: int
    threads: int
    train_runtime: int
    train_mem_mb: int
    infer_runtime: int
    infer_mem_mb: int
    infer_subjects_per_job: int
    preprocess_subjects_per_job: int
    channels_last: bool


@dataclass(frozen=True)
class EvaluationSettings(Section):
    """``evaluation``: segmentation threshold protocols, the honest threshold's source and FPR,
    lesion size bins."""

    protocols: tuple[str, ...]
    honest_source: str
    honest_fpr: float
    size_bins: tuple[int, int]


@dataclass(frozen=True)
class DemoSettings(Section):
    """``demo``: the generated demo dataset."""

    enabled: bool
    dataset: str
    voxel_size_mm: float
    lesion_volumes_ml: tuple[float, ...]


@dataclass(frozen=True)
class FailedSkullstripSettings:
    """``datasets.<name>.failed_skullstrip_set``."""

    enabled: bool
    n_subjects: int
    subjects: tuple[str, ...] | None  # candidates (None: every test_healthy subject)
    hd_bet_mode: str
    hd_bet_tta: bool
    template_spacing_mm: float

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FailedSkullstripSettings":
        return _section(cls, {**d, "subjects": tuple(d["subjects"]) if "subjects" in d else None})
