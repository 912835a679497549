"""The interface every method implements (one module per method in ``itermask.methods``).

What the workflow asks a method (cheap, no torch): which preprocessed inputs it reads for
training and for each inference condition (`InputSpec`). What training asks it: its
networks, its corruption of a training batch and its losses, its validation loss and what it
adds to the model file when training ends. What inference asks it: its result on the
inputs of one subject's conditions (`ConditionOutput`). The shared training loop
(``itermask.training``), the inference stage (``itermask.inference``) and evaluation know no
method by name; ``docs/adding_a_method.md`` walks through writing one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Mapping

from itermask.config.conditions import LESION_CONDITIONS, VAL

if TYPE_CHECKING:  # heavy imports only for type checkers
    import numpy as np
    import torch
    from torch import nn

    from itermask.config.settings import ExperimentSettings
    from itermask.io.samples import Slices, Volume
    from itermask.training.data import Samples
    from itermask.training.precision import Precision

InputKind = Literal["volume", "slices"]



def reads_slices(settings: Any, condition: str) -> bool:
    """Whether a 2D method reads the slices file for ``condition``: healthy validation scans
    always, lesion subjects with ``infer.lesion_input: slices`` (their largest-lesion slice);
    otherwise it runs slice-wise on the volume."""
    return condition == VAL or (condition in LESION_CONDITIONS and settings.infer["lesion_input"] == "slices")


@dataclass(frozen=True)
class InputSpec:
    """Preprocessed files a method reads for one purpose.

    ``kind`` ``volume``: the z-scored volume ``{sequence}.nii.gz`` + ``brainmask.nii.gz`` (+ the
    label where one exists); with ``hf`` also ``{sequence}_hf-r{radius}.nii.gz``.
    ``kind`` ``slices``: ``{sequence}_slices2d-r{radius}.npz`` (image, HF, brain, label, index).
    ``sequences``: further sequences of the same subject the method reads (none for IterMask;
    the Cyclic UNet's intermediate sequence in training, none at test time): their
    ``{name}.nii.gz`` for ``volume`` inputs, their ``{name}_slices2d-r{radius}.npz`` (the same
    slices) for ``slices`` inputs. The reader (``itermask.io.samples``) returns their images in
    ``Volume.sequences`` / ``Slices.sequences``; training batches carry them under
    ``itermask.training.data.sequence_key(name)``, turned with the image by rot90.
    """

    kind: InputKind
    hf: bool = False
    sequences: tuple[str, ...] = ()


@dataclass
class ConditionOutput:
    """A method's result on one inference condition, written by the shared stage.

    ``arrays``: NIfTI outputs by name (at least ``recon``, ``error`` = the anomaly map,
    ``brainmask``; ``mask`` when the method has a binary mask; ``label`` when known; None
    values are skipped). ``record``: the condition's result.json entries (``kind``,
    ``score_name``, ``score``, ``scores`` ...). ``figures``: file name -> function writing it.
    """

    arrays: dict[str, "np.ndarray | None"]
    affine: "np.ndarray"
    record: dict[str, Any]
    figures: dict[str, Callable[[Any], None]] = field(default_factory=dict)


@dataclass(frozen=True)
class InferenceContext:
    """What a method's inference may use besides networks and inputs."""

    settings: "ExperimentSettings"
    meta: Mapping[str, Any]
    device: "torch.device"
    #: autocast on (config ``precision: auto``; ``itermask.io.device.autocast``) or off (fp32)
    amp: bool
    seed: Callable[..., int]  # seed(key, *more keys) -> int, from io.seeds
    model_path: str
    log: Callable[[str], Any]
    #: config ``preprocess.slices2d.field_of_view_mm``: the 2D field a 2D model sees on a volume
    field_of_view_mm: float | None
    #: condition(key) -> the condition name of an input key (keys are ``<subject index>/<condition>``
    #: when a job holds several subjects)
    condition: Callable[[str], str]


class Method:
    """Base class of a method. Subclasses set the class attributes and override the hooks."""

    name: ClassVar[str]
    spatial_dims: ClassVar[int]
    #: the network whose loss is the training log's ``loss`` column (others: ``loss_<name>``)
    primary_network: ClassVar[str]
    #: training refuses to start without validation samples (e.g. a calibration needs them)
    requires_validation: ClassVar[bool] = False
    #: the ``infer`` keys the training job reads (``check``, ``finish_training``); None: all of
    #: them. Rule train's params hold only these, so changing another infer key does not retrain.
    training_infer_keys: ClassVar[tuple[str, ...] | None] = None
    #: methods of one family train the same networks in the same way, so an experiment may use
    #: the model of another method of its family (config ``model_from``; None: its own method only)
    model_family: ClassVar[str | None] = None

    def shares_models_with(self, other: "Method") -> bool:
        """Whether a model trained by ``other`` is one this method can use (the same method or family)."""
        return other.name == self.name or (self.model_family is not None and other.model_family == self.model_family)

    # -- what the workflow asks -------------------------------------------------------
    def needs_validation(self, settings: "ExperimentSettings") -> bool:
        """Whether training must refuse to start without validation samples (default:
        ``requires_validation``; a method whose settings ask for a calibration may say so)."""
        return self.requires_validation

    def train_inputs(self, settings: "ExperimentSettings") -> InputSpec:
        """Inputs of the training and validation subjects."""
        raise NotImplementedError

    def condition_inputs(self, settings: "ExperimentSettings", condition: str) -> InputSpec:
        """Inputs of one inference condition (``val``, ``lesion``, ``healthy`` or an artefact)."""
        raise NotImplementedError

    def inference_files(self, settings: "ExperimentSettings") -> list[str]:
        """Files an inference job reads besides the model and the subjects' inputs (e.g. a
        network named in the settings): the rule lists them as inputs, so a missing one stops
        the run before any job starts and a changed one reruns inference."""
        return []

    def training_files(self, settings: "ExperimentSettings") -> list[str]:
        """Files a training job reads besides its items (e.g. one a calibration at the end of
        training uses); rule train lists them as inputs, as ``inference_files`` for rule infer."""
        return []

    def check(self, settings: "ExperimentSettings") -> None:
        """Raise ConfigError for settings this method cannot run with."""

    def describe(self, settings: "ExperimentSettings") -> str:
        """The test-time settings a table caption states for a row of this experiment (""
        when there is nothing beyond the shared preprocessing and training)."""
        return ""

    # -- training -----------------------------------------------------------------------
    def build_networks(self, settings: "ExperimentSettings", image_shape: tuple[int, ...]) -> dict[str, Any]:
        """Meta of the networks to train: ``{"network": settings, "in_channels": {name: n}}``
        (stored in the model file; `networks_from_meta` builds the modules from it)."""
        raise NotImplementedError

    def networks_from_meta(self, meta: Mapping[str, Any]) -> dict[str, "nn.Module"]:
        """Freshly initialised networks (in training order) from a model file's meta."""
        raise NotImplementedError

    def corrupt(self, settings: "ExperimentSettings", brains: "np.ndarray", sample_ids: "np.ndarray",
                epoch: int) -> dict[str, "torch.Tensor"]:
        """Extra CPU tensors (B, 1, *spatial) of a training batch (e.g. masks); runs in a
        background thread, so only NumPy/torch CPU work here."""
        return {}

    def losses(self, settings: "ExperimentSettings", networks: Mapping[str, "nn.Module"],
               batch: Mapping[str, "torch.Tensor"], generator: "torch.Generator") -> dict[str, "torch.Tensor"]:
        """One loss per network to step (in order); ``generator`` is seeded per step."""
        raise NotImplementedError

    def validation_losses(self, settings: "ExperimentSettings", networks: Mapping[str, "nn.Module"],
                          val: "Samples", device: "torch.device", precision: "Precision") -> dict[str, float]:
        """Validation losses by log column (``val_loss``, ``val_loss_<name>``)."""
        return {}

    def finish_training(self, settings: "ExperimentSettings", networks: Mapping[str, "nn.Module"],
                        val: "Samples | None", device: "torch.device", precision: "Precision",
                        log: Callable[[str], Any]) -> dict[str, Any]:
        """Entries added to the model file's meta when training ends (e.g. a calibration)."""
        return {}

    # -- inference ----------------------------------------------------------------------
    def infer(self, networks: Mapping[str, "nn.Module"], inputs: Mapping[str, "Volume | Slices"],
              ctx: InferenceContext) -> dict[str, ConditionOutput]:
        """Results of every condition of one subject (``inputs`` by condition name)."""
        raise NotImplementedError

    def rethreshold(self, networks: Mapping[str, "nn.Module"], previous: Mapping[str, Any], tau: float,
                    ctx: InferenceContext) -> tuple[ConditionOutput, dict[str, Any]]:
        """Re-run a condition's final stage at ``tau`` (human in the loop), if the method has one."""
        from itermask.errors import ConfigError

        raise ConfigError(f"method '{self.name}' has no threshold to re-run")
