"""Input check, the first stage of rule preprocess_subject: a cheap, header-level check of one
subject's raw files, run before any heavy stage of the subject (skull-stripping, resampling).

Checked, with the on-disk shapes and affines in every message: each declared sequence's
image (and the label, the brain-mask file) exists and is readable NIfTI; it is 3D (a 4D
image with a single volume counts as 3D); no axis is shorter than 2 voxels; the affine is
finite, non-singular and has no shear (policy: columns of the affine's 3x3 part must be
orthogonal to within ``MAX_SHEAR_DEG`` degrees; a sheared grid cannot be resampled onto the
brain's box without carrying the shear into every output, so it is refused: reslice it
first, e.g. with ``nibabel.processing.resample_to_output``). Label and brain-mask files
must be on the on-disk grid of the image they belong to (same shape and affine). Labels are
binarised (> 0) downstream; their distinct values are recorded in the report. Voxel
intensities (NaN, empty images) are checked by the stage that reads them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from itermask.errors import InputError
from itermask.io.atomic import write_json
from itermask.io.nifti import load_nifti

MAX_SHEAR_DEG = 0.5
AFFINE_ATOL = 1e-3


def _fmt(affine: np.ndarray) -> str:
    return np.array2string(np.asarray(affine), precision=4, suppress_small=True)


def shear_degrees(affine: np.ndarray) -> float:
    """Largest deviation from 90 degrees between two columns of the affine's 3x3 part."""
    cols = np.asarray(affine, dtype=float)[:3, :3]
    cols = cols / np.linalg.norm(cols, axis=0)
    cos = np.abs(cols.T @ cols)[np.triu_indices(3, 1)]
    return float(np.degrees(np.arcsin(np.clip(cos.max(), 0.0, 1.0))))


def read_header(path: str | Path, role: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """Shape, affine and voxel sizes of one file from its header (the voxels are not read)."""
    path = Path(path)
    ctx = dict(ctx, path=path)
    if not path.exists():
        raise InputError(f"{role} file does not exist", **ctx)
    try:
        img = nib.load(str(path))
        shape, affine = tuple(int(n) for n in img.shape), np.asarray(img.affine, dtype=float)
    except Exception as exc:  # nibabel raises many types for files that are not NIfTI
        raise InputError(f"{role}: cannot read NIfTI header ({type(exc).__name__}: {exc})", **ctx) from None
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{role}: expected a 3D image, got {len(shape)}D with on-disk shape {shape}", **ctx)
    if min(shape) < 2:
        raise InputError(f"{role}: degenerate on-disk shape {shape} (an axis shorter than 2 voxels)", **ctx)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{role}: invalid (non-finite or singular) affine\n{_fmt(affine)}", **ctx)
    shear = shear_degrees(affine)
    if shear > MAX_SHEAR_DEG:
        raise InputError(f"{role}: affine has a shear of {shear:.2f} degrees (at most {MAX_SHEAR_DEG} allowed; "
                         f"reslice the image to an orthogonal grid first)\n{_fmt(affine)}", **ctx)
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    return {"path": str(path), "shape": list(shape), "affine": affine.tolist(), "voxel_mm": zooms.round(6).tolist()}


def check_on_grid(info: dict[str, Any], ref: dict[str, Any], role: str, ref_role: str, ctx: dict[str, Any]) -> None:
    """InputError (on-disk shapes and affines) unless `info` shares the grid of `ref`."""
    ctx = dict(ctx, path=info["path"])
    if info["shape"] != ref["shape"]:
        raise InputError(f"{role}: on-disk shape {tuple(info['shape'])} differs from the {ref_role}'s on-disk shape "
                         f"{tuple(ref['shape'])} ({ref['path']})", **ctx)
    if not np.allclose(info["affine"], ref["affine"], atol=AFFINE_ATOL):
        raise InputError(f"{role}: affine differs from the {ref_role}'s affine ({ref['path']}):\n"
                         f"{_fmt(info['affine'])}\nvs\n{_fmt(ref['affine'])}", **ctx)


def check_inputs(images: dict[str, str], label: str | None, mask: str | None, out_json: str | Path, *,
                 mask_sequence: str, dataset: str, subject: str) -> dict[str, Any]:
    """Check one subject's raw files (``images``: sequence -> path, every declared sequence;
    ``label`` on the first sequence's grid, ``mask`` on ``mask_sequence``'s grid) and write
    the report (headers, label values) to ``out_json``; InputError on the first problem."""
    ctx = {"dataset": dataset, "subject": subject}
    headers = {seq: read_header(p, f"sequence '{seq}' image", ctx) for seq, p in images.items()}
    report: dict[str, Any] = {"dataset": dataset, "subject": subject, "images": headers}
    first = next(iter(images))
    if label is not None:
        report["label"] = read_header(label, "label", ctx)
        check_on_grid(report["label"], headers[first], "label", f"sequence '{first}' image", ctx)
        values = np.unique(np.asanyarray(load_nifti(label, allow_empty=True, reorient=False, **ctx).dataobj))
        report["label"]["values"] = values[:20].tolist()
        report["label"]["binarised"] = "> 0"
    if mask is not None:
        report["mask"] = read_header(mask, "brain mask", ctx)
        check_on_grid(report["mask"], headers[mask_sequence], "brain mask", f"sequence '{mask_sequence}' image", ctx)
    write_json(out_json, report)
    return report
