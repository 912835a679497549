"""IterMask2 / IterMask3D: unsupervised anomaly detection and segmentation in brain MRI.

Public API (imported lazily so that `import itermask.<module>` stays light):

- ``high_frequency(image, radius=r)``: the high-frequency conditioning image (2D or 3D) at radius r.
- ``training_mask(brain_mask, rng)``: a random training mask inside the brain (2D or 3D).
- ``subject_threshold(curve, gamma=, y_limit=, r2_min=, no_exceed=, scale_at=)``: the
  subject-specific threshold from a phase-A threshold curve (tau, k*, tangent fit, branch
  used); every setting is named (the schema holds their defaults: 0.01, 10, 0.85, "first", None).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["high_frequency", "training_mask", "subject_threshold"]

_LOCATIONS = {
    "high_frequency": "itermask.core.highfreq",
    "training_mask": "itermask.core.masks",
    "subject_threshold": "itermask.core.threshold",
}


def __getattr__(name: str) -> Any:
    if name in _LOCATIONS:
        return getattr(import_module(_LOCATIONS[name]), name)
    raise AttributeError(f"module 'itermask' has no attribute '{name}'")
