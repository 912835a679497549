"""Inference condition names: what one subject is run as, and how evaluation treats it.

A subject's split decides its conditions (``Study.conditions``):

- ``val`` (split ``val``, healthy): scored, sets the healthy-voxel honest threshold and
  IterMask's calibrated tau; never a test scan;
- ``val_lesion`` (split ``val_lesion``, labelled): sets the labelled honest threshold; never a test scan;
- ``lesion`` (split ``test_lesion``): the segmentation test scans;
- ``healthy`` (split ``test_healthy``): detection's negatives; each synthetic artefact (its
  own condition, named after it, ``<type>-s<k>`` for a severity level) and
  ``failed_skullstrip`` re-use these scans as positives;
- a dataset's ``anomaly`` name (split ``test_anomalous``): a user's real anomalous scans.
"""
from __future__ import annotations

VAL = "val"
VAL_LESION = "val_lesion"
LESION = "lesion"
HEALTHY = "healthy"
FAILED_SKULLSTRIP = "failed_skullstrip"

#: labelled lesion subjects: the test set's and the labelled validation split's
LESION_CONDITIONS = (LESION, VAL_LESION)
#: conditions that get the per-image-best oracle (test labels): the test set's lesion subjects
ORACLE_CONDITIONS = (LESION,)
#: scans without an anomaly (detection label 0)
NON_ANOMALY = (VAL, HEALTHY)
#: conditions that set thresholds, never test scans
VALIDATION = (VAL, VAL_LESION)
#: the scans preprocessed as they are (artefacts are derived from HEALTHY scans)
PLAIN_SCANS = (VAL, HEALTHY, *LESION_CONDITIONS)
#: names no artefact or user anomaly may take
RESERVED = (*PLAIN_SCANS, FAILED_SKULLSTRIP, "all")
