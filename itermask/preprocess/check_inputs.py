"""Input check, the first stage of rule preprocess_subject: one subject's raw files, checked
before any heavy stage of the subject (skull-stripping, resampling).

Checked, with the on-disk shapes and affines in every message: each declared sequence's
image (and the label, the brain-mask file) exists and is readable NIfTI; it is 3D (a 4D
image with a single volume counts as 3D); no axis is shorter than 2 voxels; the header's
voxel sizes are positive; the affine is finite, non-singular and has no shear (policy:
columns of the affine's 3x3 part must be orthogonal to within ``MAX_SHEAR_DEG`` degrees; a
sheared grid cannot be resampled onto the brain's box without carrying the shear into every
output, so it is refused: reslice it first, e.g. with ``nibabel.processing.resample_to_output``).
Label and brain-mask files must be on the on-disk grid of the image they belong to (same
shape and affine). Every image's voxels are read once: the whole file must decompress, hold no
NaN/Inf and not be all zero. Label values must be non-negative integers (a multi-class label
such as BraTS's 1/2/4 is binarised as > 0 downstream; its values are recorded in the report);
a probability map or a signed image is refused. A header with neither a qform nor an sform
(orientation unknown) is accepted as nibabel reads it, with a warning in the report.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
from nibabel.openers import ImageOpener
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


def _stored_voxel_sizes(path: Path, img: Any) -> np.ndarray:
    """pixdim[1:4] as stored in the file (nibabel's loader replaces a zero by 1)."""
    with ImageOpener(str(path)) as f:
        raw = type(img.header).from_fileobj(f, check=False)
    return np.asarray(raw["pixdim"][1:4], dtype=float)


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
    unoriented = "qform_code" in img.header and int(img.header["qform_code"]) == 0 == int(img.header["sform_code"])
    if unoriented:  # the affine comes from pixdim alone, which nibabel mends (0 -> 1 mm) while loading
        zooms = _stored_voxel_sizes(path, img)
        if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
            raise InputError(f"{role}: the header stores no orientation and its voxel sizes {tuple(zooms.tolist())} "
                             "are not all positive", **ctx)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{role}: invalid (non-finite or singular) affine\n{_fmt(affine)}", **ctx)
    shear = shear_degrees(affine)
    if shear > MAX_SHEAR_DEG:
        raise InputError(f"{role}: affine has a shear of {shear:.2f} degrees (at most {MAX_SHEAR_DEG} allowed; "
                         f"reslice the image to an orthogonal grid first)\n{_fmt(affine)}", **ctx)
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    info = {"path": str(path), "shape": list(shape), "affine": affine.tolist(), "voxel_mm": zooms.round(6).tolist()}
    if unoriented:
        info["warning"] = "neither qform nor sform is set: orientation taken from the voxel sizes alone"
    return info


def check_voxels(path: str, role: str, ctx: dict[str, Any], *, label: bool = False) -> np.ndarray:
    """Read every voxel once (``load_nifti``'s checks: readable to the end, finite, not empty);
    a label must hold non-negative integers. Returns the distinct values of a label, else nothing."""
    try:
        data = np.asanyarray(load_nifti(path, allow_empty=label, reorient=False, **ctx).dataobj)
    except InputError as exc:
        raise InputError(f"{role}: {exc.problem}", path=exc.path, **ctx) from None
    if not label:
        return np.empty(0)
    values = np.unique(data)
    bad = values[(values < 0) | (values != np.round(values))]
    if bad.size:
        raise InputError(f"{role}: values must be non-negative integers (lesion = value > 0), found "
                         f"{[float(f'{v:.6g}') for v in bad[:5]]}{' ...' if bad.size > 5 else ''}: threshold a probability map first",
                         path=path, **ctx)
    return values


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
    if mask is not None:
        report["mask"] = read_header(mask, "brain mask", ctx)
        check_on_grid(report["mask"], headers[mask_sequence], "brain mask", f"sequence '{mask_sequence}' image", ctx)
    for seq, p in images.items():  # the headers first: they are cheap and name most problems
        check_voxels(p, f"sequence '{seq}' image", ctx)
    if label is not None:
        values = check_voxels(label, "label", ctx, label=True)
        report["label"]["values"] = values[:20].tolist()
        report["label"]["binarised"] = "> 0"
    report["warnings"] = [f"{role}: {info['warning']}" for role, info in
                          [*headers.items(), *((k, report[k]) for k in ("label", "mask") if k in report)]
                          if "warning" in info]
    write_json(out_json, report)
    return report
