"""What inference writes per condition: NIfTI arrays, result.json, figures; detection scores.

Detection scores (result.json ``scores``): ``mask_size_voxels`` = the number of voxels of the
final mask (in the brain), ``mask_size_fraction`` = that number / brain voxels, ``brain_voxels``,
``mean_error`` = the mean of the anomaly map over the brain voxels (METHOD.md §6, §10: what the
baselines use). ``score`` is the one named by ``score_name`` = config ``infer.score``:
``mask_size`` -> the voxel count (the papers' detection score), ``mask_fraction`` -> the
fraction of the brain (this pipeline's score before issue 10), ``mean_error``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from itermask.errors import ConfigError
from itermask.io.atomic import write_json
from itermask.io.nifti import save_nifti
from itermask.methods.base import ConditionOutput


def finite(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, numpy scalars/arrays become Python."""
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


#: config ``infer.score`` -> the key of ``scores`` it names
SCORE_KEYS = {"mask_size": "mask_size_voxels", "mask_fraction": "mask_size_fraction", "mean_error": "mean_error"}


def detection_scores(error: np.ndarray, mask: np.ndarray | None, brain: np.ndarray, score: str) -> dict[str, Any]:
    """Detection scores of one scan (module docstring); ``score`` in SCORE_KEYS."""
    brain = brain.astype(bool)
    n_brain = int(brain.sum())
    scores: dict[str, Any] = {"brain_voxels": n_brain, "mean_error": float(error[brain].mean()) if n_brain else 0.0}
    if mask is not None:
        n_mask = int((mask.astype(bool) & brain).sum())
        scores = {"mask_size_fraction": n_mask / n_brain if n_brain else 0.0, "mask_size_voxels": n_mask, **scores}
    if score not in SCORE_KEYS or SCORE_KEYS[score] not in scores:
        raise ConfigError(f"infer.score '{score}' is not available here ({', '.join(SCORE_KEYS)}; "
                          "mask_size and mask_fraction need a binary mask)")
    value = scores[SCORE_KEYS[score]]
    return {"scores": scores, "score_name": score, "score": value}


def write_condition(folder: Path, out: ConditionOutput, common: dict[str, Any]) -> None:
    """Write one condition folder: ``<name>.nii.gz`` per array (bool -> uint8), ``result.json``
    (``common`` entries, then the method's record) and the method's figures."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in out.arrays.items():
        if arr is None:
            continue
        dtype = np.uint8 if arr.dtype == bool else np.float32
        save_nifti(arr, out.affine, folder / f"{name}.nii.gz", dtype=dtype)
    write_json(folder / "result.json", finite({**common, **out.record}))
    for name, draw in out.figures.items():
        draw(folder / name)
