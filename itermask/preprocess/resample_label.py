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
    """Binarise the label (> 0), check it shares its image's grid, nearest-resample onto the grid.
    InputError when the label has no lesion voxel, or none left on the grid: a labelled (lesion)
    subject without a lesion would enter the segmentation means with an undefined sensitivity."""
    from itermask.preprocess.resample import resample_to_grid

    ctx = dict(dataset=dataset, subject=subject)
    if not Path(label_path).exists():
        raise InputError("label file missing", path=label_path, **ctx)
    label = load_nifti(label_path, allow_empty=True, **ctx)
    img = load_nifti(image_path, **ctx)
    check_same_grid(label, img, path=label_path, **ctx)
    lesion = np.asanyarray(label.dataobj) > 0
    if not lesion.any():
        raise InputError("label has no lesion voxel (> 0): list a subject without a lesion in a healthy split, "
                         "not a labelled one", path=label_path, **ctx)
    grid = nib.load(str(grid_path))
    data = resample_to_grid(nib.Nifti1Image(lesion.astype(np.uint8), label.affine), grid.shape[:3], grid.affine,
                            "nearest") > 0
    if not data.any():
        spacing = np.round(np.linalg.norm(grid.affine[:3, :3], axis=0), 3).tolist()
        raise InputError(f"label's {int(lesion.sum())} lesion voxels vanish on the {spacing} mm grid (nearest "
                         "resampling): the lesion is smaller than one voxel there", path=label_path, **ctx)
    save_nifti(data, grid.affine, out_path, dtype=np.uint8)
