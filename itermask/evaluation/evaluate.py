"""Stage: per-experiment metrics from the inference folders (METHOD.md §7-8).

Reads the ``{condition}/`` folders of each inference run (dataset, subject, folder; docs/design.md) and writes
three TSVs:

- segmentation: one row per lesion subject × protocol (``honest``, ``paper``,
  ``per_image_best`` as requested, plus always ``iterative_mask`` = IterMask's own final mask);
  ``threshold_source`` says where a shared threshold came from (honest: ``healthy_fpr`` or
  ``labelled_val``; paper: ``test_labels``). A lesion subject the method left out (result.json
  ``left_out_reason``, e.g. no lesion in IterMask2's central slice range) is one ``left_out`` row
  without metrics, its reason as ``threshold_source``: the tables say how many each row lacks.
  ``per_image_best`` is IterMask's own oracle (``mask_oracle.nii.gz``: the per-image best
  iteration/τ, column ``oracle`` = ``itermask``, or τ raised further at the final iteration,
  ``itermask_final``, whichever is better) where inference wrote one, else the best
  threshold of this image's error map (``oracle`` = ``error_map``); both use test labels.
  ``precision_ref``, ``psnr_ref``, ``ssim_ref``: the reference's definitions beside ours
  (itermask.evaluation.reference_metrics; PSNR's peak and SSIM's data range are taken over the
  test set, i.e. per experiment × test dataset).
- detection and scores: per test dataset × anomaly × score name, and per scan × score name
  (itermask.evaluation.detection).

Thresholds, protocols and summaries are per (experiment, test dataset): two test datasets of
one experiment never share a ``paper`` threshold nor a detection ROC (METHOD.md §7).
Healthy validation scans (condition ``val``) and labelled validation scans (condition
``val_lesion``, per test dataset) only set the ``honest`` threshold, from the source
``honest_source`` names.
2D results (result.json ``kind`` = ``2d``) are (H, W, n) stacks of slices: surfaces, ASSD and
SSIM are computed per slice in-plane (slice axis 2), spacing from the NIfTI header. Slice-wise
IterMask2 results on volumes (``slicewise``) are evaluated as volumes, against ``input2d.nii.gz``
(the input in the 2D model's scaled units) for PSNR/SSIM. A file evaluation needs (a lesion subject's
label, the input image, a score) that is missing, unreadable or off the error map's grid is an
InputError naming the dataset, subject and file: no subject leaves a table, no cell turns NaN.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from itermask.config.conditions import LESION, VAL, VAL_LESION
from itermask.io.atomic import write_table
from itermask.errors import ConfigError, InputError
from itermask.evaluation.detection import DETECTION_COLUMNS, SCORE_COLUMNS, detection_rows, score_rows
from itermask.evaluation.metrics import healthy_tissue_quality, overlap_metrics, segmentation_metrics
from itermask.evaluation.spec import LEFT_OUT
from itermask.evaluation.protocols import (
    binarise, honest_threshold, labelled_threshold, paper_threshold, per_image_best_threshold,
)
from itermask.evaluation.reference_metrics import ReferenceRanges, precision_ref, reference_quality, reference_ranges
from itermask.evaluation.scans import (Scan, brain_error, convergence, discover, inpainting_mask_fraction, input_image,
                                       load, load_on_grid, primary_score, tau_at_first_point)

log = logging.getLogger(__name__)

SEGMENTATION_COLUMNS = [
    "experiment", "dataset", "subject", "protocol", "threshold", "dice", "sensitivity", "precision",
    "jaccard", "assd_mm", "auroc_voxel", "psnr", "ssim", "lesion_voxels", "size_class",
    "precision_ref", "psnr_ref", "ssim_ref", "oracle", "threshold_source", "converged", "iterations",
    "tau_at_first_point", "inpainting_mask_fraction",
]
HONEST_SOURCES = ("healthy_fpr", "labelled_val")


# ----------------------------------------------------------------------------- segmentation
ORACLE_MASK = "mask_oracle.nii.gz"  # IterMask's own per-image best iteration/tau (test labels)


def _with_labels(scans: list[Scan]) -> list[Scan]:
    """The labelled scans (lesion subjects the method did not leave out): each must have its
    ``label.nii.gz`` (inference writes the subject's label, which the config requires of lesion
    splits), else InputError: a subject is never dropped from the tables silently."""
    for s in scans:
        if not (s.folder / "label.nii.gz").exists():
            raise InputError(f"condition '{s.condition}' of a lesion subject has no label.nii.gz: no segmentation "
                             "metrics without it", path=s.folder / "label.nii.gz", **s.ctx())
    return scans


def _kept_validation(scans: Sequence[Scan]) -> list[Scan]:
    """Labelled validation scans the method did not leave out (those have no slice; logged)."""
    for s in (s for s in scans if s.result.get("left_out_reason")):
        log.warning("%s/%s: val_lesion scan left out by the method (%s): not in the labelled honest threshold",
                    s.dataset, s.subject, s.result["left_out_reason"])
    return [s for s in scans if not s.result.get("left_out_reason")]


def _honest_theta(experiment: str, val_scans: list[Scan], honest_fpr: float) -> float:
    if not val_scans:
        raise InputError(f"experiment '{experiment}': protocol 'honest' needs healthy validation scans "
                         "(condition 'val'), none found")
    val = []
    for s in val_scans:
        e, b, _ = brain_error(s)
        val.append(e[b])
    try:
        return honest_threshold(val, honest_fpr)
    except ValueError as exc:
        if not 0.0 < float(honest_fpr) < 1.0:
            raise ConfigError(f"experiment '{experiment}': evaluation.honest_fpr: {exc}") from exc
        raise InputError(f"experiment '{experiment}': {exc} (healthy validation scans, condition 'val')",
                         dataset=", ".join(dict.fromkeys(s.dataset for s in val_scans))) from exc


def _labelled_theta(experiment: str, dataset: str, scans: list[Scan]) -> float:
    """Honest θ of one test dataset from its labelled validation scans (condition val_lesion)."""
    own = [s for s in scans if s.dataset == dataset]
    if not own:
        raise InputError(f"experiment '{experiment}': honest_source 'labelled_val' needs labelled validation "
                         f"scans (condition 'val_lesion') of dataset '{dataset}', none found")
    try:
        return labelled_threshold(*zip(*(_brain_vectors(s) for s in own)))
    except ValueError as exc:
        raise InputError(f"experiment '{experiment}': honest threshold from the labelled validation scans "
                         f"(condition 'val_lesion'): {exc}", dataset=dataset) from exc


def _brain_vectors(s: Scan) -> tuple[np.ndarray, np.ndarray]:
    """(error, label) of a labelled scan's brain voxels."""
    error, brain, _ = brain_error(s)
    return error[brain], load_on_grid(s, "label.nii.gz", error.shape, np.uint8)[brain] > 0


def _oracle(s: Scan, error: np.ndarray, brain: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, float, str]:
    """Per-image best (METHOD.md §7; uses the test label). IterMask (inference wrote
    ``mask_oracle``): the better of its oracle over the shrinking process and τ raised further
    at the final iteration (the final error map thresholded at the best θ >= the run's τ: the
    masks one more thresholding step with a raised τ gives; IterMask2 only shrinks, so inside
    its final mask, IterMask3D's phase B thresholds the whole brain). Other methods: the best
    threshold of the image's error map."""
    if (s.folder / ORACLE_MASK).exists():
        mask = (load_on_grid(s, ORACLE_MASK, error.shape, np.uint8) > 0) & brain
        entry = s.result.get("oracle")
        tau = entry.get("tau") if isinstance(entry, dict) else None
        tau = float(tau) if tau is not None else float("nan")
        final_tau = s.result.get("tau")
        if final_tau is not None and np.isfinite(float(final_tau)):
            region = brain
            if s.is_2d and (s.folder / "mask.nii.gz").exists():  # IterMask2: M_{k+1} = M_k & [e > tau]
                region = brain & (load_on_grid(s, "mask.nii.gz", error.shape, np.uint8) > 0)
            candidates = np.where(region, error, -np.inf)  # outside the region never predicted, still scored
            best = per_image_best_threshold(candidates[brain], label[brain], theta_min=float(final_tau))
            raised = binarise(error, region, best["theta"])
            if overlap_metrics(raised, label)["dice"] > overlap_metrics(mask, label)["dice"]:
                return raised, best["theta"], "itermask_final"
        return mask, tau, "itermask"
    theta = per_image_best_threshold(error[brain], label[brain])["theta"]
    return binarise(error, brain, theta), theta, "error_map"


def _dataset_thresholds(experiment: str, dataset: str, scans: list[Scan], protocols: list[str],
                        honest: float | None) -> dict[str, float]:
    """Thresholds shared by the subjects of one test dataset (honest, paper)."""
    out = {}
    if "honest" in protocols:
        out["honest"] = honest
    if "paper" in protocols:
        errors, labels = zip(*(_brain_vectors(s) for s in scans))
        try:
            out["paper"] = paper_threshold(errors, labels)["theta"]
        except ValueError as exc:
            raise InputError(f"experiment '{experiment}': protocol 'paper' on the test lesion subjects: {exc}",
                             dataset=dataset) from exc
    return out


def _input(s: Scan, shape: tuple[int, ...]) -> np.ndarray:
    """The scan's input image for PSNR/SSIM: every method's record names it (``scans.input_image``),
    so a record without one is an error, never a NaN cell."""
    image = input_image(s, shape)
    if image is None:
        raise InputError(f"result.json of condition '{s.condition}' names no input image (inputs.image or "
                         "inputs.slices) and the folder has no image.nii.gz: PSNR/SSIM need it",
                         path=s.folder / "result.json", **s.ctx())
    return image


def _reference_ranges(scans: list[Scan]) -> ReferenceRanges:
    """One test set's constants of the reference PSNR and SSIM (``reference_metrics``)."""
    def items():
        for s in scans:  # the brain mask's grid: the error map is checked against it where it is scored
            brain = load(s, "brainmask.nii.gz", np.uint8)[0] > 0
            label = load_on_grid(s, "label.nii.gz", brain.shape, np.uint8, "brain mask") > 0
            recon = load_on_grid(s, "recon.nii.gz", brain.shape, what="brain mask")
            yield _input(s, brain.shape), recon, brain, brain & ~label
    return reference_ranges(items())


def _subject_rows(
    experiment: str, s: Scan, shared: dict[str, float], protocols: list[str], size_bins: list[int],
    sources: dict[str, str], ranges: ReferenceRanges,
) -> list[dict[str, Any]]:
    error, brain, img = brain_error(s)
    label = load_on_grid(s, "label.nii.gz", error.shape, np.uint8) > 0
    recon = load_on_grid(s, "recon.nii.gz", error.shape)
    slice_axis = 2 if s.is_2d else None
    spacing = [float(z) for z in img.header.get_zooms()[:3]]
    image = _input(s, error.shape)
    quality = {**healthy_tissue_quality(image, recon, brain, label, slice_axis=slice_axis),
               **reference_quality(image, recon, brain & ~label, ranges, slice_axis=slice_axis)}
    preds = {name: (binarise(error, brain, theta), theta, "") for name, theta in shared.items()}
    if "per_image_best" in protocols:
        try:
            preds["per_image_best"] = _oracle(s, error, brain, label)
        except ValueError as exc:
            raise InputError(f"experiment '{experiment}': protocol 'per_image_best': {exc}",
                             path=s.folder / "brainmask.nii.gz", **s.ctx()) from exc
    if (s.folder / "mask.nii.gz").exists():  # methods without a binary mask (AE, DAE) have no such row
        preds["iterative_mask"] = ((load_on_grid(s, "mask.nii.gz", error.shape, np.uint8) > 0) & brain,
                                   float(s.result.get("tau", float("nan"))), "")
    converged, iterations = convergence(s)
    first = tau_at_first_point(s)
    rows = []
    for name, (pred, theta, oracle) in preds.items():
        m = segmentation_metrics(pred, label, error=error, brain=brain, spacing=spacing,
                                 size_bins=size_bins, slice_axis=slice_axis)
        rows.append({"experiment": experiment, "dataset": s.dataset, "subject": s.subject, "protocol": name,
                     "threshold": theta, **m, **quality, "precision_ref": precision_ref(pred, label),
                     "oracle": oracle, "threshold_source": sources.get(name, ""),
                     "converged": converged, "iterations": iterations, "tau_at_first_point": first,
                     "inpainting_mask_fraction": inpainting_mask_fraction(s)})
    return rows


def _left_out_row(experiment: str, s: Scan) -> dict[str, Any]:
    """A lesion subject the method left out (result.json ``left_out_reason``): protocol
    ``left_out``, no metrics, the reason as its threshold_source (the tables count these)."""
    return {"experiment": experiment, "dataset": s.dataset, "subject": s.subject, "protocol": LEFT_OUT,
            "threshold_source": str(s.result["left_out_reason"])}


def _segmentation_rows(
    experiment: str, scans: list[Scan], val_scans: list[Scan], protocols: list[str],
    honest_fpr: float, size_bins: list[int], honest_source: str, labelled_val_scans: Sequence[Scan],
) -> list[dict[str, Any]]:
    """Rows of every lesion subject; thresholds per (experiment, test dataset), never pooled."""
    unknown = set(protocols) - {"honest", "paper", "per_image_best", "iterative_mask"}
    if unknown:
        raise ValueError(f"unknown protocols {sorted(unknown)}")
    if honest_source not in HONEST_SOURCES:
        raise ValueError(f"unknown honest_source '{honest_source}' (one of {list(HONEST_SOURCES)})")
    left_out = [s for s in scans if s.result.get("left_out_reason")]  # e.g. no 2D test slice
    rows = [_left_out_row(experiment, s) for s in left_out]
    lesion = _with_labels([s for s in scans if s not in left_out])
    if not lesion:
        return rows
    by_fpr = "honest" in protocols and honest_source == "healthy_fpr"
    honest = _honest_theta(experiment, val_scans, honest_fpr) if by_fpr else None
    labelled = _with_labels(_kept_validation(labelled_val_scans))
    sources = {"honest": honest_source, "paper": "test_labels"}
    for dataset in dict.fromkeys(s.dataset for s in lesion):
        group = [s for s in lesion if s.dataset == dataset]
        if "honest" in protocols and not by_fpr:
            honest = _labelled_theta(experiment, dataset, labelled)
        shared = _dataset_thresholds(experiment, dataset, group, protocols, honest)
        ranges = _reference_ranges(group)
        for s in group:
            rows += _subject_rows(experiment, s, shared, protocols, size_bins, sources, ranges)
    return rows


# ----------------------------------------------------------------------------- stage
def evaluate_experiment(
    experiment: str,
    runs: Sequence[tuple[str, str, str | Path]],
    out_segmentation_tsv: str,
    out_detection_tsv: str,
    out_scores_tsv: str,
    *,
    protocols: list[str],
    honest_source: str,
    honest_fpr: float,
    size_bins: list[int],
    pooled_anomalies: Sequence[str],
) -> None:
    """Stage: write the segmentation, detection and per-scan score TSVs of one experiment.

    ``pooled_anomalies``: the conditions the detection row ``all`` pools (the synthetic
    artefact types; severity levels, lesions and real-artefact sets are never pooled).
    ``runs``: (dataset, subject, inference folder) of every subject the experiment ran on.
    ``honest_source``: ``healthy_fpr`` (θ from the healthy validation scans at ``honest_fpr``)
    or ``labelled_val`` (θ of best mean Dice on each test dataset's ``val_lesion`` scans).
    Experiments without lesion (or without detection) conditions get TSVs with headers only.
    """
    scans = discover(runs)
    val_scans = [s for s in scans if s.condition == VAL]
    lesion_scans = [s for s in scans if s.condition == LESION]
    labelled_val = [s for s in scans if s.condition == VAL_LESION]
    seg = _segmentation_rows(experiment, lesion_scans, val_scans, list(protocols), honest_fpr, list(size_bins),
                             honest_source, labelled_val)
    primary = primary_score(scans) if scans else None
    scores = pd.DataFrame(score_rows(experiment, scans, primary), columns=SCORE_COLUMNS)
    det = detection_rows(experiment, scores, pooled_anomalies) if not scores.empty else []
    write_table(pd.DataFrame(seg, columns=SEGMENTATION_COLUMNS), out_segmentation_tsv, sep="\t")
    write_table(pd.DataFrame(det, columns=DETECTION_COLUMNS), out_detection_tsv, sep="\t")
    write_table(scores, out_scores_tsv, sep="\t")
