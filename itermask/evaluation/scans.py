"""The inference results of one experiment as scans: one per condition folder of each run
(dataset and subject come with the run, never from folder names), with the arrays and
scores evaluation reads from it.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np

from itermask.errors import InputError

log = logging.getLogger(__name__)


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


def read_result(path: Path, dataset: str, subject: str) -> dict[str, Any]:
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
            scans.append(Scan(dataset, subject, cond.name, cond, read_result(cond / "result.json", dataset, subject)))
    return scans


def load(scan: Scan, name: str, dtype: type = np.float32) -> tuple[np.ndarray, nib.Nifti1Image]:
    path = scan.folder / name
    if not path.exists():
        raise InputError(f"missing {name} in condition '{scan.condition}'", path=path, **scan.ctx())
    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=dtype), img


def brain_error(scan: Scan) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Image]:
    error, img = load(scan, "error.nii.gz")
    brain, _ = load(scan, "brainmask.nii.gz", np.uint8)
    if brain.shape != error.shape:
        raise InputError(f"brainmask shape {brain.shape} differs from error map {error.shape}",
                         path=scan.folder / "brainmask.nii.gz", **scan.ctx())
    if not np.all(np.isfinite(error)):
        raise InputError("error map contains NaN/Inf", path=scan.folder / "error.nii.gz", **scan.ctx())
    return error, brain > 0, img


def input_image(scan: Scan, shape: tuple[int, ...]) -> np.ndarray | None:
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
SCORE_ALIASES = {"mask_size": "mask_size_voxels", "mask_fraction": "mask_size_fraction"}
NOT_SCORES = ("brain_voxels",)


def scan_scores(scan: Scan) -> dict[str, float]:
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


def convergence(scan: Scan) -> tuple[float, float]:
    """(converged, iterations) of an iterative mask's run from result.json: 1.0 when the mask's
    last change fell below ``tol`` before the ``max_iterations`` cap, else 0.0, and the
    iterations it took (IterMask3D: phase B; 2D: every slice converged, the most iterations of a
    slice). NaN for methods without iterations and for one-step runs (-spatial, cap 1)."""
    r = scan.result
    conv, cap = r.get("converged"), r.get("max_iterations")
    if conv is None or cap is None or int(cap) <= 1:
        return float("nan"), float("nan")
    if isinstance(conv, list):  # 2D: one entry per slice
        its = r.get("iterations") or []
        if not conv:
            return float("nan"), float("nan")
        return float(all(conv)), float(max(its)) if its else float("nan")
    return float(bool(conv)), float(r.get("iterations_b", float("nan")))


#: result.json keys of a diffusion baseline's inpainting mask (mean fraction of the brain over its slices)
MASK_FRACTION_KEYS = ("mean_mask_fraction", "mean_initial_mask_fraction")  # AutoDDPM, DDPM


def inpainting_mask_fraction(scan: Scan) -> float:
    """The fraction of the brain a diffusion baseline inpainted (result.json: AutoDDPM's
    ``mean_mask_fraction``, DDPM's ``mean_initial_mask_fraction``, means over the scan's slices);
    NaN for other methods and scans without slices."""
    for key in MASK_FRACTION_KEYS:
        value = scan.result.get(key)
        if value is not None:
            return float(value)
    return float("nan")


def tau_at_first_point(scan: Scan) -> float:
    """1.0 when a subject-specific tau came from the phase-A curve's first point (k* = 0: the
    slope already exceeds gamma there, or never does with the ``first`` fallback), so nearly
    the whole brain stays masked; 0.0 for a later point; NaN without a subject-specific tau
    (fixed tau, one step, baselines, per-slice fits)."""
    r = scan.result
    fit = r.get("fit")
    if r.get("threshold") != "subject" or not isinstance(fit, dict) or fit.get("k") is None:
        return float("nan")
    return float(int(fit["k"]) == 0)


def primary_score(scans: list[Scan]) -> str | None:
    names = [s.result.get("score_name") for s in scans if s.result.get("score_name")]
    if names:
        return max(set(names), key=names.count)
    keys = [k for s in scans for k in scan_scores(s)]
    if not keys:
        return None
    return "mask_size" if "mask_size" in keys else keys[0]
