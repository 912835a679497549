"""Preprocessing stage functions (METHOD.md §1): paths in, atomic outputs out.

Each function takes paths plus the keys of ``config["preprocess"]`` as keyword arguments,
and raises InputError naming the dataset, subject and file for bad input.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Sequence

import nibabel as nib
import numpy as np

from itermask.io.atomic import atomic_path, save_figure, write_json
from itermask.errors import InputError
from itermask.core.highfreq import high_frequency, high_frequency_torch
from itermask.io.nifti import check_same_grid, load_array, load_nifti, save_nifti
from itermask.preprocess.normalise import iterative_zscore
from itermask.preprocess.qc import qc_figure, qc_table, subject_stats
from itermask.preprocess.slices2d import (
    brain_slices,
    resize_slices,
    scale_for_2d,
    select_test_slice,
    select_train_slices,
    take_axial,
)

__all__ = [
    "make_brain_mask", "resample_mask", "resample_label",
    "resample_and_normalise", "extract_slices2d", "qc_subject", "qc_table",
]

MASK_METHODS = ("deepbet", "stripped", "pattern")


def _load_grid_array(
    path: str | Path, what: str, dataset: str, subject: str, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Load an already-preprocessed array, turning read failures into InputError."""
    if not Path(path).exists():
        raise InputError(f"{what} file does not exist", path=path, dataset=dataset, subject=subject)
    try:
        data, affine = load_array(path, dtype=dtype)
    except Exception as exc:
        raise InputError(f"cannot read {what} ({type(exc).__name__}: {exc})",
                         path=path, dataset=dataset, subject=subject) from exc
    if data.ndim != 3:
        raise InputError(f"{what} must be 3D, got shape {data.shape}", path=path, dataset=dataset, subject=subject)
    return data, affine


def _check_same_shape(data: np.ndarray, ref: np.ndarray, path: str | Path, dataset: str, subject: str) -> None:
    if data.shape != ref.shape:
        raise InputError(f"shape {data.shape} differs from the brain mask's shape {ref.shape}",
                         path=path, dataset=dataset, subject=subject)


def make_brain_mask(
    image_path: str | Path,
    out_path: str | Path,
    *,
    method: str,
    mask_path: str | Path | None = None,
    dataset: str,
    subject: str,
    device: str = "cpu",
) -> None:
    """Native-resolution brain mask (RAS, uint8, on the reoriented image's grid).

    ``method``: "deepbet" (skull-strip), "stripped" (image != 0), "pattern" (binarise the
    mask file ``mask_path`` > 0; it must share the image's grid).
    """
    ctx = dict(dataset=dataset, subject=subject)
    if method not in MASK_METHODS:
        raise ValueError(f"brain mask method must be one of {MASK_METHODS}, got '{method}'")
    img = load_nifti(image_path, **ctx)
    if method == "deepbet":
        from itermask.preprocess.skullstrip import deepbet_mask

        try:
            mask = deepbet_mask(img, device=device)
        except ValueError as exc:
            raise InputError(str(exc), path=image_path, **ctx) from exc
    elif method == "stripped":
        mask = np.asanyarray(img.dataobj) != 0
    else:
        if mask_path is None:
            raise InputError("brain_mask method 'pattern' needs a mask file", path=image_path, **ctx)
        mimg = load_nifti(mask_path, **ctx)
        check_same_grid(mimg, img, path=mask_path, **ctx)
        mask = np.asanyarray(mimg.dataobj) > 0
        if not mask.any():
            raise InputError("brain mask has no voxel > 0", path=mask_path, **ctx)
    save_nifti(mask, img.affine, out_path, dtype=np.uint8)


def resample_mask(
    native_mask_path: str | Path,
    out_path: str | Path,
    *,
    spacing_mm: float,
    box: Sequence[int],
    dataset: str,
    subject: str,
) -> None:
    """Nearest-resample the native mask to isotropic ``spacing_mm`` and crop/pad it to ``box``
    centred on the mask's bounding box. The output defines the subject's target grid."""
    from itermask.preprocess.resample import crop_or_pad_to_box, resample_to_spacing  # antspyx: slow import

    ctx = dict(dataset=dataset, subject=subject)
    img = load_nifti(native_mask_path, **ctx)
    binary = nib.Nifti1Image((np.asanyarray(img.dataobj) > 0).astype(np.uint8), img.affine)
    res = resample_to_spacing(binary, spacing_mm, "nearest")
    data = np.asanyarray(res.dataobj) > 0
    if not data.any():
        raise InputError(f"brain mask is empty after resampling to {spacing_mm} mm", path=native_mask_path, **ctx)
    out, affine = crop_or_pad_to_box(data, res.affine, box, centre_mask=data, fill=False)
    lost = 1.0 - out.sum() / data.sum()
    if lost > 0:
        warnings.warn(
            f"dataset '{dataset}', subject '{subject}': {100 * lost:.2f} % of the brain mask lies "
            f"outside the {list(box)} box at {spacing_mm} mm and was cropped", stacklevel=2,
        )
    save_nifti(out, affine, out_path, dtype=np.uint8)


def resample_label(
    label_path: str | Path,
    image_path: str | Path,
    grid_path: str | Path,
    out_path: str | Path,
    *,
    dataset: str,
    subject: str,
) -> None:
    """Binarise the label (> 0), check it shares its image's grid, nearest-resample onto the grid."""
    from itermask.preprocess.resample import resample_to_grid

    ctx = dict(dataset=dataset, subject=subject)
    if not Path(label_path).exists():
        raise InputError("label file missing", path=label_path, **ctx)
    label = load_nifti(label_path, allow_empty=True, **ctx)
    img = load_nifti(image_path, **ctx)
    check_same_grid(label, img, path=label_path, **ctx)
    binary = nib.Nifti1Image((np.asanyarray(label.dataobj) > 0).astype(np.uint8), label.affine)
    grid = nib.load(str(grid_path))
    data = resample_to_grid(binary, grid.shape[:3], grid.affine, "nearest") > 0
    save_nifti(data, grid.affine, out_path, dtype=np.uint8)


def resample_and_normalise(
    image_path: str | Path,
    grid_path: str | Path,
    out_image: str | Path,
    out_hf: str | Path,
    *,
    repeats: int = 3,
    clip_sd: float = 3.0,
    background: str | float = "min",
    hf_radius: int = 15,
    dataset: str,
    subject: str,
) -> None:
    """Linearly resample the (validated, RAS) raw image onto the grid of the brain mask
    ``grid_path``, z-score it iteratively in the brain (constant background) and write it
    with its 3D high-frequency image; float32, no intermediate file."""
    from itermask.preprocess.resample import resample_to_grid  # antspyx: slow import

    img = load_nifti(image_path, dataset=dataset, subject=subject)
    brain, affine = _load_grid_array(grid_path, "brain mask", dataset, subject)
    x = np.asarray(resample_to_grid(img, brain.shape, affine, "linear"), dtype=np.float32)
    try:
        z = iterative_zscore(x, brain > 0, repeats=repeats, clip_sd=clip_sd, background=background)
    except ValueError as exc:
        raise InputError(f"cannot normalise: {exc}", path=image_path, dataset=dataset, subject=subject) from exc
    hf = high_frequency(z, radius=hf_radius)
    save_nifti(z, affine, out_image, dtype=np.float32)
    save_nifti(hf, affine, out_hf, dtype=np.float32)


def extract_slices2d(
    image_path: str | Path,
    brainmask_path: str | Path,
    out_npz: str | Path,
    *,
    label_path: str | Path | None = None,
    role: str,
    size: int = 128,
    train_range_fraction: Sequence[float] = (0.45, 0.58),
    hf_radius: int = 15,
    dataset: str,
    subject: str,
) -> None:
    """Axial 2D slices (scaled bg=-3 / p90=+3, area-resized to size², HF per slice) as npz.

    ``role``: "train" (central range, brain, no lesion), "test" (largest-lesion slice; needs a
    non-empty label) or "all" (every slice with brain).
    """
    import torch

    ctx = dict(dataset=dataset, subject=subject)
    if role not in ("train", "test", "all"):
        raise ValueError(f"role must be 'train', 'test' or 'all', got '{role}'")
    x, _ = _load_grid_array(image_path, "normalised image", dataset, subject)
    brain = _load_grid_array(brainmask_path, "brain mask", dataset, subject)[0] > 0
    _check_same_shape(x, brain, image_path, dataset, subject)
    label = None
    if label_path is not None:
        if not Path(label_path).exists():
            raise InputError("label file missing", path=label_path, **ctx)
        label = _load_grid_array(label_path, "label", dataset, subject)[0] > 0
        _check_same_shape(label, brain, label_path, dataset, subject)
    if role == "test":
        if label is None:
            raise InputError("role 'test' needs a label file", path=image_path, **ctx)
        if not label.any():
            raise InputError("label is empty: no lesion slice for the test role", path=label_path, **ctx)
        index = np.array([select_test_slice(label)], dtype=np.int64)
    elif role == "train":
        index = select_train_slices(label, brain, train_range_fraction)
    else:
        index = brain_slices(brain)
    if index.size == 0:
        raise InputError(f"no axial slice qualifies for role '{role}'", path=image_path, **ctx)
    try:
        scaled = scale_for_2d(x, brain)
    except ValueError as exc:
        raise InputError(f"cannot scale for 2D: {exc}", path=image_path, **ctx) from exc
    image = resize_slices(take_axial(scaled, index), size)
    brain2d = resize_slices(take_axial(brain, index), size)
    label2d = (resize_slices(take_axial(label, index), size) if label is not None
               else np.zeros_like(brain2d))
    with torch.no_grad():
        hf = high_frequency_torch(torch.from_numpy(image)[:, None], radius=hf_radius, ndim=2)[:, 0].numpy()
    with atomic_path(out_npz) as tmp:
        np.savez_compressed(
            tmp, image=image.astype(np.float32), hf=hf.astype(np.float32), brain=brain2d,
            label=label2d, index=index, role=np.array(role),
        )


def qc_subject(
    images: Mapping[str, str | Path],
    brainmask_path: str | Path,
    out_png: str | Path,
    out_json: str | Path,
    *,
    label_path: str | Path | None = None,
    dataset: str,
    subject: str,
) -> None:
    """QC picture (mid-slices with outlines) and statistics JSON of one preprocessed subject."""
    brain, affine = _load_grid_array(brainmask_path, "brain mask", dataset, subject)
    brain = brain > 0
    volumes = {}
    for name, path in images.items():
        vol, _ = _load_grid_array(path, f"image '{name}'", dataset, subject)
        _check_same_shape(vol, brain, path, dataset, subject)
        volumes[name] = vol
    label = None
    if label_path is not None:
        label = _load_grid_array(label_path, "label", dataset, subject)[0] > 0
        _check_same_shape(label, brain, label_path, dataset, subject)
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    if not brain.any():
        raise InputError("brain mask is empty", path=brainmask_path, dataset=dataset, subject=subject)
    record = {"dataset": dataset, "subject": subject, **subject_stats(volumes, brain, voxel_ml, label=label)}
    fig = qc_figure(volumes, brain, label, title=f"{dataset} / sub-{subject}")
    save_figure(fig, out_png, dpi=80)
    write_json(out_json, record)


def qc_skullstrip(image_path: str | Path, mask_path: str | Path, out_png: str | Path, *, dataset: str, subject: str) -> None:
    """QC picture of the skull-strip: the raw head (RAS) with the native brain-mask outline."""
    img = load_nifti(image_path, dataset=dataset, subject=subject)
    mask = np.asarray(load_nifti(mask_path, dataset=dataset, subject=subject).dataobj) > 0
    _check_same_shape(mask, np.asarray(img.dataobj), mask_path, dataset, subject)
    name = Path(image_path).name.split(".")[0]
    fig = qc_figure({name: np.asarray(img.dataobj, dtype=np.float32)}, mask, title=f"{dataset} / sub-{subject}: skull-strip")
    save_figure(fig, out_png, dpi=80)
