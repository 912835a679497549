"""Rules high_frequency and artefact_high_frequency: the HF image of a volume at a radius.

The preprocess_subject and artefacts rules write the HF image at ``preprocess.hf_radius`` themselves
(one job fewer per image); these rules make it at any other radius an experiment asks for.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from itermask.core.highfreq import high_frequency
from itermask.io.nifti import load_nifti, save_nifti


def write_high_frequency(image_path: str | Path, out_hf: str | Path, *, radius: int, dataset: str, subject: str) -> None:
    """Write the 3D high-frequency image (radius ``radius``, index units) of a volume, float32."""
    img = load_nifti(image_path, dataset=dataset, subject=subject)
    hf = high_frequency(np.asarray(img.dataobj, dtype=np.float32), radius=int(radius))
    save_nifti(hf, img.affine, out_hf, dtype=np.float32)
