"""Detection scores (METHOD.md §6): the papers' score is the number of voxels of the final mask."""
from __future__ import annotations

import numpy as np
import pytest

from itermask.errors import ConfigError
from itermask.inference.outputs import detection_scores


def _scan():
    brain = np.zeros((4, 5, 6), bool)
    brain[1:3, 1:4, 1:5] = True          # 24 brain voxels
    mask = np.zeros_like(brain)
    mask[1, 1:3, 1:4] = True             # 6 voxels in the brain
    mask[0, 0, 0] = True                 # outside the brain: not counted
    error = np.where(brain, 0.5, 7.0)
    error[1, 1, 1] = 2.9                 # brain mean = (23 * 0.5 + 2.9) / 24 = 0.6
    return error, mask, brain


def test_mask_size_is_the_voxel_count():
    error, mask, brain = _scan()
    out = detection_scores(error, mask, brain, "mask_size")
    assert out["score_name"] == "mask_size" and out["score"] == 6
    assert out["scores"] == {"mask_size_voxels": 6, "mask_size_fraction": 0.25, "brain_voxels": 24,
                             "mean_error": pytest.approx(0.6)}


def test_mask_fraction_and_mean_error_are_named_options():
    error, mask, brain = _scan()
    assert detection_scores(error, mask, brain, "mask_fraction")["score"] == 0.25
    assert detection_scores(error, None, brain, "mean_error")["score"] == pytest.approx(0.6)
    with pytest.raises(ConfigError, match="binary mask"):
        detection_scores(error, None, brain, "mask_size")
