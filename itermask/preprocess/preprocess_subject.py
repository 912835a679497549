"""Rules preprocess_subject__<dataset> and preprocess_labelled__<dataset> (its subjects with a
label): a subject's whole preprocessing in one job (METHOD.md §1); rules
preprocess__<dataset>__<chunk> (``resources.preprocess_subjects_per_job`` > 1): several subjects
in one job (``preprocess_subjects``), the same stages and outputs for each.

In order: the header check of every raw file (``check_inputs``: a bad file fails the job
before deepbet or antspyx run), the native brain mask, its resampled copy (the subject's grid)
and the skull-strip QC picture (``brain_mask``), then per sequence resampling onto that grid,
iterative z-score and the HF image at ``preprocess.hf_radius`` (``normalise``); then the label
on the grid (``resample_label``), the 2D slices of the sequences slice-input experiments read
(``slices2d``, at ``preprocess.slices2d.hf_radius``) and the QC picture and statistics
(``qc.qc_subject``). Every file is written atomically (temporary name, then rename); on an
error Snakemake removes the job's outputs, so a rerun starts the subject over.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from itermask.preprocess.brain_mask import make_brain_mask, qc_skullstrip, resample_mask
from itermask.preprocess.check_inputs import check_inputs
from itermask.preprocess.normalise import resample_and_normalise
from itermask.preprocess.qc import qc_subject
from itermask.preprocess.resample_label import resample_label
from itermask.preprocess.slices2d import extract_slices2d

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawFiles:
    """A subject's raw files as declared (present or not: the check says which are missing)."""

    images: Mapping[str, str]  # sequence -> path, every declared sequence
    label: str | None
    mask: str | None  # brain-mask file (brain_mask method "pattern")


@dataclass(frozen=True)
class SubjectOutputs:
    """Where the job writes: the check's report, the brain masks and skull-strip QC, per
    sequence its images, the label (subjects with one), slices and the subject's QC."""

    checked: str
    native_mask: str
    grid: str
    qc: str
    images: Mapping[str, str]  # sequence -> normalised image
    hf: Mapping[str, str]  # sequence -> its HF image at hf_radius
    qc_png: str
    qc_json: str
    label: str | None = None  # the label on the grid: exactly when RawFiles.label is set
    slices: Mapping[str, str] = field(default_factory=dict)  # sequence -> its 2D slices file


def outputs_from_named(named: Mapping[str, str], sequences: Sequence[str]) -> SubjectOutputs:
    """SubjectOutputs from a rule's named outputs: checked, mask, grid, qc, qc_png, qc_json,
    image_<sequence>, hf_<sequence>, slices_<sequence> (those written), label (labelled subjects)."""
    return SubjectOutputs(
        checked=named["checked"], native_mask=named["mask"], grid=named["grid"], qc=named["qc"],
        images={q: named[f"image_{q}"] for q in sequences}, hf={q: named[f"hf_{q}"] for q in sequences},
        qc_png=named["qc_png"], qc_json=named["qc_json"], label=named.get("label"),
        slices={q: named[f"slices_{q}"] for q in sequences if f"slices_{q}" in named},
    )


@dataclass(frozen=True)
class SliceParams:
    """``preprocess.slices2d`` and the subject's role (itermask.preprocess.slices2d.extract_slices2d)."""

    role: str
    size: int
    field_of_view_mm: float
    train_range_fraction: Sequence[float]
    hf_radius: int


@dataclass(frozen=True, kw_only=True)
class PreprocessParams:
    """The settings the job uses (``preprocess`` section, the dataset's ``brain_mask``, the
    resolved ``device`` of the skull-stripper and its autocast ``amp``: config ``precision``)."""

    mask_method: str
    mask_sequence: str
    spacing_mm: float
    box: Sequence[int]
    zscore_repeats: int
    zscore_clip_sd: float
    background: str | float
    hf_radius: int
    device: str
    amp: bool
    slices: SliceParams | None = None  # needed when SubjectOutputs.slices names a sequence


def check_plan(raw: RawFiles, out: SubjectOutputs, p: PreprocessParams) -> None:
    """ValueError when the outputs do not fit the raw files and settings (a rule's mistake)."""
    if not set(raw.images) == set(out.images) == set(out.hf):
        raise ValueError(f"sequences differ: raw images {sorted(raw.images)}, outputs {sorted(out.images)}, "
                         f"HF outputs {sorted(out.hf)}")
    if (raw.label is None) != (out.label is None):
        raise ValueError(f"a label output needs a label file and vice versa: label {raw.label}, output {out.label}")
    if not set(out.slices) <= set(raw.images):
        raise ValueError(f"slices of sequences {sorted(set(out.slices) - set(raw.images))} that the subject lacks")
    if out.slices and p.slices is None:
        raise ValueError("slice outputs without slice settings (PreprocessParams.slices)")


@dataclass(frozen=True)
class SubjectJob:
    """One subject of a multi-subject job: its raw files, outputs and settings (their
    ``slices.role`` is the subject's own)."""

    subject: str
    raw: RawFiles
    out: SubjectOutputs
    params: PreprocessParams


def preprocess_subject(raw: RawFiles, out: SubjectOutputs, p: PreprocessParams, *, dataset: str, subject: str,
                       logger: logging.Logger = log) -> None:
    """Check, skull-strip and normalise one subject (every sequence), then its label, slices and
    QC; InputError names the dataset, subject, file and problem of the first failure. Progress
    goes to ``logger`` (the rule's log in a job)."""
    check_subject(raw, out, p, dataset=dataset, subject=subject, logger=logger)
    process_subject(raw, out, p, dataset=dataset, subject=subject, logger=logger)


def preprocess_subjects(jobs: Sequence[SubjectJob], *, dataset: str, logger: logging.Logger = log) -> None:
    """`preprocess_subject` for several subjects of ``dataset`` in one process (the skull-stripper
    and the imports loaded once): every subject's input check first, so a bad file fails the job
    before any subject's skull-stripping, then each subject in turn. Each subject's outputs are
    those `preprocess_subject` writes, byte for byte."""
    if len({j.subject for j in jobs}) != len(jobs):
        raise ValueError(f"a subject twice in one job: {[j.subject for j in jobs]}")
    for j in jobs:
        check_subject(j.raw, j.out, j.params, dataset=dataset, subject=j.subject, logger=logger)
    for i, j in enumerate(jobs, 1):
        logger.info("subject %s (%d of %d)", j.subject, i, len(jobs))
        process_subject(j.raw, j.out, j.params, dataset=dataset, subject=j.subject, logger=logger)


def check_subject(raw: RawFiles, out: SubjectOutputs, p: PreprocessParams, *, dataset: str, subject: str,
                  logger: logging.Logger = log) -> None:
    """The plan's consistency (`check_plan`) and every raw file's header (``check_inputs``,
    which writes ``out.checked``); warnings go to ``logger``."""
    check_plan(raw, out, p)
    checked = check_inputs(dict(raw.images), raw.label, raw.mask, out.checked, mask_sequence=p.mask_sequence,
                           dataset=dataset, subject=subject)
    for warning in checked["warnings"]:
        logger.warning("%s", warning)


def process_subject(raw: RawFiles, out: SubjectOutputs, p: PreprocessParams, *, dataset: str, subject: str,
                    logger: logging.Logger = log) -> None:
    """The stages after the check: brain mask, its grid and QC, each sequence's resampling,
    z-score and HF image, then `derived_outputs`."""
    ids = dict(dataset=dataset, subject=subject)
    logger.info("inputs checked; brain mask (%s) from %s", p.mask_method, p.mask_sequence)
    image = raw.images[p.mask_sequence]
    make_brain_mask(image, out.native_mask, method=p.mask_method, mask_path=raw.mask, device=p.device,
                    amp=p.amp, **ids)
    resample_mask(out.native_mask, out.grid, spacing_mm=p.spacing_mm, box=list(p.box), **ids)
    qc_skullstrip(image, out.native_mask, out.qc, **ids)
    for sequence, path in raw.images.items():
        logger.info("normalising %s", sequence)
        resample_and_normalise(
            path, out.grid, out.images[sequence], out.hf[sequence], repeats=p.zscore_repeats,
            clip_sd=p.zscore_clip_sd, background=p.background, hf_radius=p.hf_radius, **ids,
        )
    derived_outputs(raw, out, p, logger=logger, **ids)


def derived_outputs(raw: RawFiles, out: SubjectOutputs, p: PreprocessParams, *, dataset: str, subject: str,
                    logger: logging.Logger = log) -> None:
    """The stages that read the normalised images: the label on the grid (its image: the first
    sequence's), the 2D slices of ``out.slices``' sequences, the QC picture and statistics."""
    ids = dict(dataset=dataset, subject=subject)
    if raw.label is not None:
        logger.info("resampling the label")
        resample_label(raw.label, next(iter(raw.images.values())), out.grid, out.label, **ids)
    for sequence, path in out.slices.items():
        s = p.slices
        logger.info("2D slices of %s (role %s, HF radius %d)", sequence, s.role, s.hf_radius)
        extract_slices2d(
            out.images[sequence], out.grid, path, label_path=out.label, role=s.role, size=s.size,
            field_of_view_mm=s.field_of_view_mm, train_range_fraction=tuple(s.train_range_fraction),
            hf_radius=s.hf_radius, log=logger.info, **ids,
        )
    logger.info("QC picture and statistics")
    qc_subject(dict(out.images), out.grid, out.qc_png, out.qc_json, label_path=out.label, **ids)
