"""Rule preprocess_subject (one per dataset, ``preprocess_subject__<dataset>``): a subject's
whole preprocessing in one job (METHOD.md §1).

In order: the header check of every raw file (``check_inputs``: a bad file fails the job
before deepbet or antspyx run), the native brain mask, its resampled copy (the subject's grid)
and the skull-strip QC picture (``brain_mask``), then per sequence resampling onto that grid,
iterative z-score and the HF image at ``preprocess.hf_radius`` (``normalise``). Every file is
written atomically (temporary name, then rename); on an error Snakemake removes the job's
outputs, so a rerun starts the subject over.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

from itermask.preprocess.brain_mask import make_brain_mask, qc_skullstrip, resample_mask
from itermask.preprocess.check_inputs import check_inputs
from itermask.preprocess.normalise import resample_and_normalise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawFiles:
    """A subject's raw files as declared (present or not: the check says which are missing)."""

    images: Mapping[str, str]  # sequence -> path, every declared sequence
    label: str | None
    mask: str | None  # brain-mask file (brain_mask method "pattern")


@dataclass(frozen=True)
class SubjectOutputs:
    """Where the job writes: the check's report, the brain masks and QC, per sequence its images."""

    checked: str
    native_mask: str
    grid: str
    qc: str
    images: Mapping[str, str]  # sequence -> normalised image
    hf: Mapping[str, str]  # sequence -> its HF image at hf_radius


@dataclass(frozen=True)
class PreprocessParams:
    """The settings the job uses (``preprocess`` section and the dataset's ``brain_mask``)."""

    mask_method: str
    mask_sequence: str
    spacing_mm: float
    box: Sequence[int]
    zscore_repeats: int
    zscore_clip_sd: float
    background: str | float
    hf_radius: int
    device: str = "cpu"


def preprocess_subject(raw: RawFiles, out: SubjectOutputs, p: PreprocessParams, *, dataset: str, subject: str,
                       logger: logging.Logger = log) -> None:
    """Check, skull-strip and normalise one subject (every sequence); InputError names the
    dataset, subject, file and problem of the first failure. Progress goes to ``logger`` (the
    rule's log in a job)."""
    ids = dict(dataset=dataset, subject=subject)
    if not set(raw.images) == set(out.images) == set(out.hf):
        raise ValueError(f"sequences differ: raw images {sorted(raw.images)}, outputs {sorted(out.images)}, "
                         f"HF outputs {sorted(out.hf)}")
    check_inputs(dict(raw.images), raw.label, raw.mask, out.checked, mask_sequence=p.mask_sequence, **ids)
    logger.info("inputs checked; brain mask (%s) from %s", p.mask_method, p.mask_sequence)
    image = raw.images[p.mask_sequence]
    make_brain_mask(image, out.native_mask, method=p.mask_method, mask_path=raw.mask, device=p.device, **ids)
    resample_mask(out.native_mask, out.grid, spacing_mm=p.spacing_mm, box=list(p.box), **ids)
    qc_skullstrip(image, out.native_mask, out.qc, **ids)
    for sequence, path in raw.images.items():
        logger.info("normalising %s", sequence)
        resample_and_normalise(
            path, out.grid, out.images[sequence], out.hf[sequence], repeats=p.zscore_repeats,
            clip_sd=p.zscore_clip_sd, background=p.background, hf_radius=p.hf_radius, **ids,
        )
