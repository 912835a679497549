"""Stage: per-experiment metrics from the inference folders (METHOD.md §7-8).

Reads the ``{condition}/`` folders of each inference run (dataset, subject, folder; docs/design.md) and writes
three TSVs:

- segmentation: one row per lesion subject × protocol (``honest``, ``paper``,
  ``per_image_best`` as requested, plus always ``iterative_mask`` = IterMask's own final mask).
- detection: one row per anomaly × score name; negatives = the ``healthy`` test scans, positives
  = the scans of that condition (each artefact name, severity levels ``<type>-s<k>`` and
  ``lesion`` separately); ``all`` pools every plain artefact type (no severity levels, no lesion).
- scores: one row per scan × score name (``role`` = val/test, ``label`` 1 = anomalous).

Healthy validation scans (condition ``val``) only set the ``honest`` threshold.
2D results (result.json ``kind`` = ``2d``) are (H, W, n) stacks of slices: surfaces, ASSD and
SSIM are computed per slice in-plane (slice axis 2), spacing from the NIfTI header. Slice-wise
IterMask2 results on volumes (``slicewise``) are evaluated as volumes, against ``input2d.nii.gz``
(the input in the 2D model's scaled units) for PSNR/SSIM.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np
import pandas as pd

from itermask.io.atomic import atomic_path
from itermask.errors import InputError
from itermask.evaluation.metrics import detection_metrics, healthy_tissue_quality, segmentation_metrics
from itermask.evaluation.protocols import binarise, honest_threshold, paper_threshold, per_image_best_threshold

log = logging.getLogger(__name__)

SEGMENTATION_COLUMNS = [
    "experiment", "dataset", "subject", "protocol", "threshold", "dice", "sensitivity", "precision",
    "jaccard", "assd_mm", "auroc_voxel", "psnr", "ssim", "lesion_voxels", "size_class",
]
DETECTION_COLUMNS = [
    "experiment", "anomaly", "score_name", "primary", "n_pos", "n_neg",
    "auroc", "auprc", "fpr80", "fpr90", "fnr80", "fnr90",
]
SCORE_COLUMNS = ["experiment", "dataset", "subject", "condition", "role", "label", "score_name", "score", "primary"]
NON_ANOMALY = ("val", "healthy")
SEVERITY = re.compile(r"^(?P<type>.+)-s(?P<level>\d+)$")


@dataclass
class Scan:
    """One condition folder of one subject."""

    dataset: str
    subject: str
    condition: str
    folder: Path
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def is_2d(self) -> bool:
        """(H, W, n) stack of independent 2D slices (IterMask2 on a slices2d file)."""
        return self.result.get("kind") == "2d"

    def ctx(self) -> dict[str, str]:
        return {"dataset": self.dataset, "subject": self.subject}


def _read_result(path: Path, dataset: str, subject: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read result.json ({exc})", path=path, dataset=dataset, subject=subject) from exc


def discover(runs: Sequence[tuple[str, str, str | Path]]) -> list[Scan]:
    """Every condition folder (holding result.json) of the given inference runs, each a
    (dataset, subject, folder) triple: the IDs travel as values, the folder's name is free."""
    scans = []
    for dataset, subject, folder in runs:
        d = Path(folder)
        if not d.is_dir():
            raise InputError("inference folder does not exist", path=d, dataset=dataset, subject=subject)
        for cond in sorted(p for p in d.iterdir() if p.is_dir() and (p / "result.json").exists()):
            scans.append(Scan(dataset, subject, cond.name, cond, _read_result(cond / "result.json", dataset, subject)))
    return scans


def _load(scan: Scan, name: str, dtype: type = np.float32) -> tuple[np.ndarray, nib.Nifti1Image]:
    path = scan.folder / name
    if not path.exists():
        raise InputError(f"missing {name} in condition '{scan.condition}'", path=path, **scan.ctx())
    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=dtype), img


def _brain_error(scan: Scan) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Image]:
    error, img = _load(scan, "error.nii.gz")
    brain, _ = _load(scan, "brainmask.nii.gz", np.uint8)
    if brain.shape != error.shape:
        raise InputError(f"brainmask shape {brain.shape} differs from error map {error.shape}",
                         path=scan.folder / "brainmask.nii.gz", **scan.ctx())
    if not np.all(np.isfinite(error)):
        raise InputError("error map contains NaN/Inf", path=scan.folder / "error.nii.gz", **scan.ctx())
    return error, brain > 0, img


def _input_image(scan: Scan, shape: tuple[int, ...]) -> np.ndarray | None:
    """The model's input image on the result grid and in the result's units, first found of:
    ``input2d.nii.gz`` (slice-wise IterMask2: scaled input), ``image.nii.gz`` in the condition
    folder, ``result["inputs"]["image"]`` (a NIfTI of the same shape), ``result["inputs"]["slices"]``
    (a slices2d ``.npz``: rows whose ``index`` are result.json's ``slices``). None (logged) if none."""
    inputs = scan.result.get("inputs") or {}
    candidates = [scan.folder / "input2d.nii.gz", scan.folder / "image.nii.gz"]
    candidates += [Path(inputs[k]) for k in ("image", "slices") if inputs.get(k)]
    for path in candidates:
        if not path.exists():
            continue
        if path.suffix == ".npz":
            with np.load(path) as z:
                images, index = z["image"], z["index"]
            wanted = [int(s) for s in scan.result.get("slices", [])]
            rows = [int(np.flatnonzero(index == s)[0]) for s in wanted if np.any(index == s)]
            if len(rows) == len(wanted) and rows:
                arr = np.moveaxis(images[rows], 0, -1).astype(np.float32)
                if arr.shape == shape:
                    return arr
            continue
        arr = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
        if arr.shape == shape:
            return arr
    log.warning("%s/%s/%s: no input image on the result grid; PSNR/SSIM set to NaN",
                scan.dataset, scan.subject, scan.condition)
    return None


# result.json "score_name" -> the key of its "scores" dict holding the same value
SCORE_ALIASES = {"mask_size": "mask_size_fraction"}
NOT_SCORES = ("brain_voxels",)


def _scores(scan: Scan) -> dict[str, float]:
    """Detection scores of a scan: the primary ``score`` under ``score_name`` plus every other
    entry of the ``scores`` dict (counts that are not scores, e.g. brain_voxels, left out)."""
    r = scan.result
    out: dict[str, float] = {}
    name = str(r.get("score_name", "score"))
    score = r.get("score")
    if isinstance(score, dict):  # older layout: a dict of named scores
        out.update({str(k): float(v) for k, v in score.items() if v is not None})
    elif isinstance(score, (int, float)):
        out[name] = float(score)
    extra = r.get("scores")
    if isinstance(extra, dict):
        for k, v in extra.items():
            if k in NOT_SCORES or v is None or k == SCORE_ALIASES.get(name) or k in out:
                continue
            out[str(k)] = float(v)
    if not out:
        log.warning("%s/%s/%s: result.json has no 'score'; scan left out of the scores",
                    scan.dataset, scan.subject, scan.condition)
    return out


def _primary_score(scans: list[Scan]) -> str | None:
    names = [s.result.get("score_name") for s in scans if s.result.get("score_name")]
    if names:
        return max(set(names), key=names.count)
    keys = [k for s in scans for k in _scores(s)]
    if not keys:
        return None
    return "mask_size" if "mask_size" in keys else keys[0]


def _write_tsv(df: pd.DataFrame, path: str) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep="NaN", float_format="%.6g")


# ----------------------------------------------------------------------------- segmentation
def _segmentation_rows(
    experiment: str, scans: list[Scan], val_scans: list[Scan], protocols: list[str],
    honest_fpr: float, size_bins: list[int],
) -> list[dict[str, Any]]:
    lesion = []
    for s in scans:
        if not (s.folder / "label.nii.gz").exists():
            log.warning("%s/%s: lesion condition without label.nii.gz; no segmentation metrics", s.dataset, s.subject)
            continue
        lesion.append(s)
    if not lesion:
        return []
    vectors = []  # brain-voxel error and label per lesion subject
    for s in lesion:
        error, brain, _ = _brain_error(s)
        label, _ = _load(s, "label.nii.gz", np.uint8)
        vectors.append((error[brain], label[brain] > 0))
    thresholds: dict[str, list[float]] = {}
    if "honest" in protocols:
        if not val_scans:
            raise InputError(f"experiment '{experiment}': protocol 'honest' needs healthy validation scans "
                             "(condition 'val'), none found")
        val = []
        for s in val_scans:
            e, b, _ = _brain_error(s)
            val.append(e[b])
        theta = honest_threshold(val, honest_fpr)
        thresholds["honest"] = [theta] * len(lesion)
    if "paper" in protocols:
        p = paper_threshold([v[0] for v in vectors], [v[1] for v in vectors])
        thresholds["paper"] = [p["theta"]] * len(lesion)
    if "per_image_best" in protocols:
        thresholds["per_image_best"] = [per_image_best_threshold(e, g)["theta"] for e, g in vectors]
    unknown = set(protocols) - {"honest", "paper", "per_image_best", "iterative_mask"}
    if unknown:
        raise ValueError(f"unknown protocols {sorted(unknown)}")

    rows = []
    for i, s in enumerate(lesion):
        error, brain, img = _brain_error(s)
        label = _load(s, "label.nii.gz", np.uint8)[0] > 0
        recon = _load(s, "recon.nii.gz")[0]
        mask = (_load(s, "mask.nii.gz", np.uint8)[0] > 0) & brain
        slice_axis = 2 if s.is_2d else None
        spacing = [float(z) for z in img.header.get_zooms()[:3]]
        image = _input_image(s, error.shape)
        quality = (healthy_tissue_quality(image, recon, brain, label, slice_axis=slice_axis)
                   if image is not None else {"psnr": float("nan"), "ssim": float("nan")})
        preds = {name: (binarise(error, brain, th[i]), th[i]) for name, th in thresholds.items()}
        preds["iterative_mask"] = (mask, float(s.result.get("tau", float("nan"))))
        for name in [*thresholds, "iterative_mask"]:
            pred, theta = preds[name]
            m = segmentation_metrics(pred, label, error=error, brain=brain, spacing=spacing,
                                     size_bins=size_bins, slice_axis=slice_axis)
            rows.append({"experiment": experiment, "dataset": s.dataset, "subject": s.subject,
                         "protocol": name, "threshold": theta, **m, **quality})
    return rows


# ----------------------------------------------------------------------------- detection
def _score_rows(experiment: str, scans: list[Scan], primary: str | None) -> list[dict[str, Any]]:
    rows = []
    for s in scans:
        for name, value in _scores(s).items():
            rows.append({
                "experiment": experiment, "dataset": s.dataset, "subject": s.subject, "condition": s.condition,
                "role": "val" if s.condition == "val" else "test",
                "label": 0 if s.condition in NON_ANOMALY else 1,
                "score_name": name, "score": value, "primary": name == primary,
            })
    return rows


def _anomaly_order(conditions: list[str]) -> list[str]:
    plain = [c for c in conditions if not SEVERITY.match(c) and c != "lesion"]
    levels = sorted((c for c in conditions if SEVERITY.match(c)),
                    key=lambda c: (SEVERITY.match(c)["type"], int(SEVERITY.match(c)["level"])))
    return plain + levels + (["lesion"] if "lesion" in conditions else [])


def _detection_rows(experiment: str, scores: pd.DataFrame) -> list[dict[str, Any]]:
    test = scores[scores["role"] == "test"]
    conditions = list(dict.fromkeys(c for c in test["condition"] if c not in NON_ANOMALY))
    if test.empty or not (test["label"] == 0).any() or not conditions:
        return []
    groups = {c: [c] for c in _anomaly_order(conditions)}
    plain = [c for c in conditions if not SEVERITY.match(c) and c != "lesion"]
    if plain:
        groups["all"] = plain
    rows = []
    for score_name, df in test.groupby("score_name", sort=False):
        neg = df[df["label"] == 0]["score"].to_numpy()
        primary = bool(df["primary"].any())
        for anomaly, conds in groups.items():
            pos = df[df["condition"].isin(conds)]["score"].to_numpy()
            if pos.size == 0 or neg.size == 0:
                continue
            labels = np.r_[np.zeros(neg.size, int), np.ones(pos.size, int)]
            m = detection_metrics(labels, np.r_[neg, pos])
            rows.append({"experiment": experiment, "anomaly": anomaly, "score_name": score_name, "primary": primary,
                         "n_pos": int(pos.size), "n_neg": int(neg.size), **m})
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
    honest_fpr: float,
    size_bins: list[int],
) -> None:
    """Stage: write the segmentation, detection and per-scan score TSVs of one experiment.

    ``runs``: (dataset, subject, inference folder) of every subject the experiment ran on.
    Experiments without lesion (or without detection) conditions get TSVs with headers only.
    """
    scans = discover(runs)
    val_scans = [s for s in scans if s.condition == "val"]
    lesion_scans = [s for s in scans if s.condition == "lesion"]
    seg = _segmentation_rows(experiment, lesion_scans, val_scans, list(protocols), honest_fpr, list(size_bins))
    primary = _primary_score(scans) if scans else None
    score_rows = _score_rows(experiment, scans, primary)
    scores = pd.DataFrame(score_rows, columns=SCORE_COLUMNS)
    det = _detection_rows(experiment, scores) if not scores.empty else []
    _write_tsv(pd.DataFrame(seg, columns=SEGMENTATION_COLUMNS), out_segmentation_tsv)
    _write_tsv(pd.DataFrame(det, columns=DETECTION_COLUMNS), out_detection_tsv)
    _write_tsv(scores, out_scores_tsv)
