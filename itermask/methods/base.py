"""The interface every method implements (one module per method in ``itermask.methods``).

What the workflow asks a method (cheap, no torch): which preprocessed inputs it reads for
training and for each inference condition (`InputSpec`). What training and inference ask
it: its networks, its training objective, its validation and its inference on a batch of
samples. The shared training loop (``itermask.training``), the inference stage
(``itermask.inference``) and evaluation know no method by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:  # heavy imports only for type checkers
    from itermask.config.settings import ExperimentSettings

InputKind = Literal["volume", "slices"]


@dataclass(frozen=True)
class InputSpec:
    """Preprocessed files a method reads for one purpose.

    ``kind`` ``volume``: the z-scored volume ``{sequence}.nii.gz`` + ``brainmask.nii.gz`` (+ the
    label where one exists); with ``hf`` also ``{sequence}_hf-r{radius}.nii.gz``.
    ``kind`` ``slices``: ``{sequence}_slices2d-r{radius}.npz`` (image, HF, brain, label, index).
    ``sequences``: further sequences of the same subject the method reads (none for IterMask).
    """

    kind: InputKind
    hf: bool = False
    sequences: tuple[str, ...] = ()


class Method:
    """Base class of a method. Subclasses set the class attributes and override the hooks."""

    name: ClassVar[str]
    spatial_dims: ClassVar[int]

    # -- what the workflow asks -------------------------------------------------------
    def train_inputs(self, settings: "ExperimentSettings") -> InputSpec:
        """Inputs of the training and validation subjects."""
        raise NotImplementedError

    def condition_inputs(self, settings: "ExperimentSettings", condition: str) -> InputSpec:
        """Inputs of one inference condition (``val``, ``lesion``, ``healthy`` or an artefact)."""
        raise NotImplementedError

    def check(self, settings: "ExperimentSettings") -> None:
        """Raise ConfigError for settings this method cannot run with (called by Study)."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "spatial_dims": self.spatial_dims}
