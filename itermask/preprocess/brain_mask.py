"""Brain mask (stage of rule preprocess_subject): the native mask, its resampled copy (the subject's grid), a QC picture.

Skull-stripping itself is ``itermask.preprocess.skullstrip`` (deepbet); resampling is
``itermask.preprocess.resample`` (antspyx, imported on use: a slow import).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from itermask.errors import InputError
from itermask.io.atomic import save_figure
from itermask.io.nifti import check_same_grid, load_nifti, save_nifti
from itermask.preprocess.grid import check_same_shape
from itermask.preprocess.qc import qc_figure

MASK_METHODS = ("deepbet", "stripped", "pattern")


def make_brain_mask(
    image_path: str | Path,
    out_path: str | Path,
    *,
    method: str,
    mask_path: str | Path | None,
    dataset: str,
    subject: str,
    device: str,
    amp: bool,
) -> None:
    """Native-resolution brain mask (RAS, uint8, on the reoriented image's grid).

    ``method``: "deepbet" (skull-strip on ``device``, autocast with ``amp``), "stripped"
    (image != 0), "pattern" (binarise the mask file ``mask_path`` > 0; it must share the image's grid).
    """
    ctx = dict(dataset=dataset, subject=subject)
    if method not in MASK_METHODS:
        raise ValueError(f"brain mask method must be one of {MASK_METHODS}, got '{method}'")
    img = load_nifti(image_path, **ctx)
    if method == "deepbet":
        from itermask.preprocess.skullstrip import deepbet_mask

        try:
            mask = deepbet_mask(img, device=device, amp=amp)
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


def qc_skullstrip(image_path: str | Path, mask_path: str | Path, out_png: str | Path, *, dataset: str, subject: str) -> None:
    """QC picture of the skull-strip: the raw head (RAS) with the native brain-mask outline."""
    img = load_nifti(image_path, dataset=dataset, subject=subject)
    mask = np.asarray(load_nifti(mask_path, dataset=dataset, subject=subject).dataobj) > 0
    check_same_shape(mask, np.asarray(img.dataobj), mask_path, dataset, subject)
    name = Path(image_path).name.split(".")[0]
    fig = qc_figure({name: np.asarray(img.dataobj, dtype=np.float32)}, mask, title=f"{dataset} / sub-{subject}: skull-strip")
    save_figure(fig, out_png, dpi=80)
