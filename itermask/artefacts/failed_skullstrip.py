"""The failed-skull-stripping set (IterMask3D Table 2, "real artefacts"), as the paper builds it.

Each candidate healthy scan is skull-stripped by several tools (``TOOLS``): deepbet (the
dataset's own brain mask, rule brain_mask), HD-BET (``itermask.preprocess.hd_bet``) and an
MNI-template registration (``itermask.artefacts.template_mask``). SynthStrip is not among them:
its model is not distributed in a form that runs offline from a pinned package. Per subject
(`subject_agreement`): the pairwise Dice of the masks, the subject's mean agreement (the mean
over all pairs) and its outlying mask (the tool whose mean Dice with the others is lowest).
Per dataset (`select_subjects`): the ``n_subjects`` candidates with the lowest mean
agreement. Each selected scan, stripped with its outlying mask, is preprocessed like a normal
scan with that mask as its brain mask (a derived dataset, ``Study.failed_strip_dataset``) and
becomes the inference condition ``failed_skullstrip`` of the subject.
"""
from __future__ import annotations

import csv
import itertools
import json
import logging
from pathlib import Path
from typing import Mapping

import nibabel as nib
import numpy as np

from itermask.config.conditions import FAILED_SKULLSTRIP
from itermask.errors import InputError
from itermask.io.atomic import write_text
from itermask.io.nifti import check_same_grid, load_nifti, save_nifti

__all__ = [
    "TOOLS", "CONDITION", "mask_agreement", "subject_agreement", "select_subjects",
    "make_subject_masks", "build_failed_skullstrip_set", "selected_subjects",
]

log = logging.getLogger(__name__)

TOOLS = ("deepbet", "hd_bet", "template")
CONDITION = FAILED_SKULLSTRIP  # the inference condition of the outlying masks
COLUMNS = ("subject", *(f"dice_{a}_{b}" for a, b in itertools.combinations(TOOLS, 2)),
           *(f"{t}_ml" for t in TOOLS), "mean_agreement", "outlier", "selected")


def mask_agreement(a: np.ndarray, b: np.ndarray, *, voxel_ml: float) -> dict:
    """Dice and volumes (ml) of two boolean masks on the same grid.

    Returns ``dice``, ``volume_a_ml``, ``volume_b_ml`` and ``volume_ratio`` (= b / a; inf
    when ``a`` is empty). Raises ValueError for different shapes or two empty masks.
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks have different shapes {a.shape} and {b.shape}")
    na, nb = int(a.sum()), int(b.sum())
    if na + nb == 0:
        raise ValueError("both masks are empty")
    inter = int(np.logical_and(a, b).sum())
    return {
        "dice": 2.0 * inter / (na + nb),
        "volume_a_ml": na * voxel_ml,
        "volume_b_ml": nb * voxel_ml,
        "volume_ratio": nb / na if na else float("inf"),
    }


def subject_agreement(masks: Mapping[str, np.ndarray], *, voxel_ml: float) -> dict:
    """Agreement of one subject's masks (tool -> boolean mask, at least three tools).

    ``dice``: {"a|b": Dice} over all pairs (in the order of ``masks``); ``mean_agreement``:
    their mean; ``tool_agreement``: per tool, its mean Dice with the others; ``outlier``: the
    tool with the lowest of these (ties: the first); ``volume_ml`` per tool.
    """
    tools = list(masks)
    if len(tools) < 3:
        raise ValueError(f"need at least three masks to find an outlying one, got {tools}")
    dice = {f"{a}|{b}": mask_agreement(masks[a], masks[b], voxel_ml=voxel_ml)["dice"]
            for a, b in itertools.combinations(tools, 2)}
    per_tool = {t: float(np.mean([d for pair, d in dice.items() if t in pair.split("|")])) for t in tools}
    outlier = min(tools, key=lambda t: (per_tool[t], tools.index(t)))
    return {
        "dice": dice, "mean_agreement": float(np.mean(list(dice.values()))), "tool_agreement": per_tool,
        "outlier": outlier, "volume_ml": {t: float(np.count_nonzero(masks[t]) * voxel_ml) for t in tools},
    }


def select_subjects(agreement: Mapping[str, float], n_subjects: int) -> list[tuple[str, bool]]:
    """Subjects by increasing mean agreement (ties: subject ID), True for the ``n_subjects`` lowest."""
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    order = sorted(agreement, key=lambda s: (agreement[s], s))
    return [(s, i < n_subjects) for i, s in enumerate(order)]


def make_subject_masks(
    image_path: str | Path, deepbet_path: str | Path, out_masks: Mapping[str, str | Path],
    out_outlier: str | Path, out_json: str | Path, *, dataset: str, subject: str,
    device: str, amp: bool, hd_bet_mode: str, hd_bet_tta: bool, template_spacing_mm: float,
) -> None:
    """Stage (one subject): HD-BET and template masks of the raw image (``out_masks`` by tool),
    their agreement with deepbet's ``deepbet_path`` (``out_json``), the outlying mask
    (``out_outlier``, in the raw image's on-disk orientation). The tool masks are on the image's
    RAS-canonical grid, as rule brain_mask's. HD-BET runs on ``device``, autocast with ``amp``
    (config ``precision``). A tool failing on the image raises InputError naming the subject; an
    install problem (HD-BET model files missing: RuntimeError) is raised as it is.
    """
    from itermask.artefacts.template_mask import template_brain_mask
    from itermask.preprocess.hd_bet import hd_bet_mask

    ctx = dict(dataset=dataset, subject=subject)
    img = load_nifti(image_path, **ctx)
    deepbet = load_nifti(deepbet_path, allow_empty=True, **ctx)
    check_same_grid(deepbet, img, path=deepbet_path, **ctx)
    masks = {"deepbet": np.asanyarray(deepbet.dataobj) > 0}
    # What each tool raises for an image it cannot strip, reported as the subject's InputError.
    # HD-BET's RuntimeErrors (model files missing from the install, a torch/CUDA error) are not
    # the image's fault and pass through as they are; the template's come from antsRegistration.
    for tool, run, image_errors in (
            ("hd_bet", lambda: hd_bet_mask(img, device=device, mode=hd_bet_mode, tta=hd_bet_tta, amp=amp),
             (ValueError,)),
            ("template", lambda: template_brain_mask(img, spacing_mm=template_spacing_mm), (RuntimeError, ValueError))):
        try:
            masks[tool] = run()
        except image_errors as exc:  # no head found, antsRegistration exit status
            raise InputError(f"{tool} skull-stripping failed ({exc})", path=image_path, **ctx) from exc
        save_nifti(masks[tool], img.affine, out_masks[tool], dtype=np.uint8)
    try:
        record = subject_agreement(masks, voxel_ml=float(abs(np.linalg.det(img.affine[:3, :3]))) / 1000.0)
    except ValueError as exc:
        raise InputError(str(exc), path=image_path, **ctx) from exc
    if not masks[record["outlier"]].any():
        raise InputError(f"the outlying mask ({record['outlier']}) is empty", path=image_path, **ctx)
    _save_on_raw_grid(masks[record["outlier"]], img.affine, image_path, out_outlier)
    write_text(out_json, json.dumps({"dataset": dataset, "subject": subject, **record}, indent=1) + "\n")


def _save_on_raw_grid(mask: np.ndarray, ras_affine: np.ndarray, image_path: str | Path, out: str | Path) -> None:
    """Write a RAS-grid mask in the raw image's on-disk orientation (its shape and affine): the
    derived dataset reads it as a mask file of that image (brain_mask method pattern)."""
    raw_ornt = nib.orientations.io_orientation(nib.load(str(image_path)).affine)
    ras = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), ras_affine)
    back = ras.as_reoriented(nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), raw_ornt))
    save_nifti(np.asanyarray(back.dataobj), back.affine, out, dtype=np.uint8)


def build_failed_skullstrip_set(
    agreements: Mapping[str, str | Path], out_tsv: str | Path, *, n_subjects: int, dataset: str,
) -> None:
    """Stage (one dataset): the set's record, one row per candidate (``agreements``: subject ->
    its `make_subject_masks` JSON), by increasing mean agreement; ``selected`` marks the
    ``n_subjects`` lowest (every candidate when there are fewer). Columns: ``COLUMNS``."""
    if not agreements:
        raise InputError("no candidate subjects for the failed skull-stripping set", dataset=dataset)
    records = {}
    for subject, path in agreements.items():
        try:
            records[subject] = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the subject's mask agreement ({exc})", path=path,
                             dataset=dataset, subject=subject) from exc
    if n_subjects > len(records):
        log.warning("dataset '%s': n_subjects %d > %d candidates: all selected", dataset, n_subjects, len(records))
    ranked = select_subjects({s: r["mean_agreement"] for s, r in records.items()}, n_subjects)
    lines = ["\t".join(COLUMNS)]
    for subject, selected in ranked:
        r = records[subject]
        pairs = [f"{r['dice'][f'{a}|{b}']:.4f}" for a, b in itertools.combinations(TOOLS, 2)]
        volumes = [f"{r['volume_ml'][t]:.1f}" for t in TOOLS]
        lines.append("\t".join([subject, *pairs, *volumes, f"{r['mean_agreement']:.4f}", r["outlier"],
                                "yes" if selected else "no"]))
    write_text(out_tsv, "\n".join(lines) + "\n")


def selected_subjects(tsv_path: str) -> list[str]:
    """Subjects marked selected in a set's TSV (the path as given: a missing file raises
    FileNotFoundError with that name, which Snakemake reads as 'not yet built')."""
    with open(tsv_path, newline="") as fh:
        return [row["subject"] for row in csv.DictReader(fh, delimiter="\t") if row["selected"] == "yes"]
