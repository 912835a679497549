"""The one reader of preprocessed inputs, for training and inference alike.

A *volume* item names NIfTI files on one grid: ``image`` (z-scored), ``brain``, and
optionally ``hf`` (high-frequency image) and ``label``. A *slices* item names one
``*_slices2d-r<radius>.npz`` file (keys ``image``, ``hf``, ``brain``, ``index``; optional
``label``, ``role``). Either may name ``sequences``: {sequence: file} of further sequences of
the same subject (a method's ``InputSpec.sequences``, e.g. the Cyclic UNet's intermediate
sequence in training): NIfTI volumes on the image's grid, or slices files with the same
slice indices. Every problem raises InputError naming the dataset, subject and file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from itermask.errors import InputError
from itermask.io.nifti import check_same_grid, load_nifti


@dataclass
class Volume:
    """One subject's volume: image (float32), brain (bool), hf / label (or None), affine."""

    image: np.ndarray
    brain: np.ndarray
    hf: np.ndarray | None
    label: np.ndarray | None
    affine: np.ndarray
    paths: dict[str, str | None]
    #: further sequences of the subject on the same grid (item ``sequences``), by name
    sequences: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Slices:
    """One subject's 2D slices: image, hf (n, H, W) float32; brain, label (n, H, W) bool."""

    image: np.ndarray
    hf: np.ndarray
    brain: np.ndarray
    label: np.ndarray | None
    index: np.ndarray
    role: str | None
    paths: dict[str, str | None]
    #: affine of the (H, W, n) stack (real pixel spacing; identity for files without one)
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    #: why a test subject has no slice (no lesion in the central range); None otherwise
    left_out_reason: str | None = None
    #: further sequences' images (n, H, W) of the same slices (item ``sequences``), by name
    sequences: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def has_brain(self) -> np.ndarray:
        """(n,) bool: slices with at least one brain pixel."""
        return self.brain.reshape(len(self.brain), -1).any(axis=1) if len(self.brain) else np.zeros(0, bool)


def read_volume(item: Mapping[str, Any], *, dataset: str | None = None, subject: str | None = None) -> Volume:
    """Read a volume item; every file must be on the image's grid; the brain must not be empty."""
    ctx = {"dataset": dataset, "subject": subject}
    for key in ("image", "brain"):
        if not item.get(key):
            raise InputError(f"input item has no '{key}' path", **ctx)
    img = load_nifti(item["image"], reorient=False, **ctx)
    arrays: dict[str, np.ndarray | None] = {"hf": None, "label": None}
    brain_img = load_nifti(item["brain"], reorient=False, allow_empty=True, **ctx)
    check_same_grid(brain_img, img, path=item["brain"], **ctx)
    brain = np.asarray(brain_img.dataobj) > 0.5
    if not brain.any():
        raise InputError("brain mask is empty", path=item["brain"], **ctx)
    for key in ("hf", "label"):
        if item.get(key):
            other = load_nifti(item[key], reorient=False, allow_empty=True, **ctx)
            check_same_grid(other, img, path=item[key], **ctx)
            arr = np.asarray(other.dataobj)
            arrays[key] = arr.astype(np.float32) if key == "hf" else arr > 0
    paths = {k: (str(item[k]) if item.get(k) else None) for k in ("image", "hf", "brain", "label")}
    further = {}
    for name, path in (item.get("sequences") or {}).items():
        other = load_nifti(path, reorient=False, **ctx)
        check_same_grid(other, img, path=path, **ctx)
        further[name] = np.asarray(other.dataobj, dtype=np.float32)
        paths[f"sequence_{name}"] = str(path)
    return Volume(np.asarray(img.dataobj, dtype=np.float32), brain, arrays["hf"], arrays["label"], img.affine, paths,
                  further)


def read_slices(path: str | Path, *, dataset: str | None = None, subject: str | None = None) -> Slices:
    """Read a slices file: image/hf/brain of one (n, H, W) shape, finite values."""
    path = Path(path)
    ctx = {"path": path, "dataset": dataset, "subject": subject}
    if not path.is_file():
        raise InputError("slices file does not exist", **ctx)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: np.asarray(z[k]) for k in z.files}
    except Exception as exc:
        raise InputError(f"cannot read slices file ({type(exc).__name__}: {exc})", **ctx) from exc
    missing = sorted({"image", "hf", "brain", "index"} - set(data))
    if missing:
        raise InputError(f"slices file lacks keys {missing}", **ctx)
    image = data["image"].astype(np.float32)
    left_out = str(data["left_out_reason"]) if "left_out_reason" in data else None
    if image.ndim != 3 or (image.shape[0] == 0 and not left_out):
        raise InputError(f"expected image of shape (n, H, W) with n >= 1, got {image.shape}", **ctx)
    for key in ("hf", "brain", *(["label"] if "label" in data else [])):
        if data[key].shape != image.shape:
            raise InputError(f"'{key}' has shape {data[key].shape}, 'image' has {image.shape}", **ctx)
    if not (np.all(np.isfinite(image)) and np.all(np.isfinite(data["hf"]))):
        raise InputError("slices contain NaN/Inf", **ctx)
    label = data["label"].astype(bool) if "label" in data else None
    role = str(data["role"]) if "role" in data else None
    affine = data["affine"].astype(np.float64) if "affine" in data else np.eye(4)
    return Slices(image, data["hf"].astype(np.float32), data["brain"].astype(bool), label,
                  data["index"].astype(int), role, {"slices": str(path)}, affine, left_out)


def read_slices_item(item: Mapping[str, Any], *, dataset: str | None = None, subject: str | None = None) -> Slices:
    """A slices item: its file, and the further sequences' slices files (``sequences``), which
    must hold the same slices (axial indices) in the same size."""
    main = read_slices(item["slices"], dataset=dataset, subject=subject)
    for name, path in (item.get("sequences") or {}).items():
        other = read_slices(path, dataset=dataset, subject=subject)
        if not np.array_equal(other.index, main.index) or other.image.shape != main.image.shape:
            raise InputError(f"slices of sequence '{name}' (indices {other.index.tolist()}, shape "
                             f"{other.image.shape}) differ from those of {item['slices']} (indices "
                             f"{main.index.tolist()}, shape {main.image.shape})", path=path, dataset=dataset,
                             subject=subject)
        main.sequences[name] = other.image
        main.paths[f"sequence_{name}"] = str(path)
    return main


def read_item(item: Mapping[str, Any], *, dataset: str | None = None, subject: str | None = None) -> Volume | Slices:
    """A slices item (``{"slices": path}``) or a volume item, read by the matching reader."""
    if item.get("slices"):
        return read_slices_item(item, dataset=dataset, subject=subject)
    return read_volume(item, dataset=dataset, subject=subject)
