"""The lesion label, binarised, nearest-resampled onto the subject's grid (a stage of the
subject's preprocessing job, rule preprocess_labelled__<dataset>)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from itermask.errors import InputError
from itermask.io.nifti import check_same_grid, load_nifti, save_nifti


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
