"""The inference results of one experiment as scans: one per condition folder of each run
(dataset and subject come with the run, never from folder names), with the arrays and
scores evaluation reads from it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np

from itermask.errors import InputError


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


def read_nifti(scan: Scan, path: Path, dtype: type = np.float32) -> tuple[np.ndarray, nib.Nifti1Image]:
    """A NIfTI file of the scan as (array, image); InputError naming the scan and file if it is
    missing or unreadable."""
    if not path.exists():
        raise InputError(f"missing {path.name} in condition '{scan.condition}'", path=path, **scan.ctx())
    try:
        img = nib.load(str(path))
        return np.asarray(img.dataobj, dtype=dtype), img
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"cannot read NIfTI file ({type(exc).__name__}: {exc})", path=path, **scan.ctx()) from exc


def load(scan: Scan, name: str, dtype: type = np.float32) -> tuple[np.ndarray, nib.Nifti1Image]:
    """The condition's file ``name`` (``read_nifti``)."""
    return read_nifti(scan, scan.folder / name, dtype)


def check_grid(scan: Scan, arr: np.ndarray, path: Path, shape: tuple[int, ...], what: str = "error map") -> np.ndarray:
    """``arr`` (read from ``path``) if it has the result grid's ``shape``, else InputError."""
    if arr.shape != tuple(shape):
        raise InputError(f"shape {arr.shape} differs from the {what}'s shape {tuple(shape)}", path=path, **scan.ctx())
    return arr


def load_on_grid(scan: Scan, name: str, shape: tuple[int, ...], dtype: type = np.float32,
                 what: str = "error map") -> np.ndarray:
    """The condition's file ``name`` as an array of ``shape``, the grid of ``what`` (InputError otherwise)."""
    return check_grid(scan, load(scan, name, dtype)[0], scan.folder / name, shape, what)


def brain_error(scan: Scan) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Image]:
    error, img = load(scan, "error.nii.gz")
    brain = load_on_grid(scan, "brainmask.nii.gz", error.shape, np.uint8)
    if not np.all(np.isfinite(error)):
        raise InputError("error map contains NaN/Inf", path=scan.folder / "error.nii.gz", **scan.ctx())
    return error, brain > 0, img


def expected_input(scan: Scan) -> Path | None:
    """The file holding the model's input on the result grid and in the result's units, decided
    from the record: ``input2d.nii.gz`` for slice-wise runs (``kind`` = ``slicewise``: the input in
    the 2D model's scaled units), else ``image.nii.gz`` in the condition folder where there is one,
    else result.json's ``inputs``: ``slices`` (a slices2d ``.npz``) of 2D stacks, ``image`` of
    volumes. None when the record names no input (every method's record does)."""
    if scan.result.get("kind") == "slicewise":
        return scan.folder / "input2d.nii.gz"
    own = scan.folder / "image.nii.gz"
    if own.exists():
        return own
    inputs = scan.result.get("inputs") or {}
    key = "slices" if scan.is_2d else "image"
    return Path(inputs[key]) if isinstance(inputs, dict) and inputs.get(key) else None


def _slices_stack(scan: Scan, path: Path) -> np.ndarray:
    """The rows of a slices2d file that result.json's ``slices`` name, as an (H, W, n) stack."""
    try:
        with np.load(path, allow_pickle=False) as z:
            images, index = np.asarray(z["image"]), np.asarray(z["index"])
    except Exception as exc:
        raise InputError(f"cannot read slices file ({type(exc).__name__}: {exc})", path=path, **scan.ctx()) from exc
    wanted = [int(s) for s in scan.result.get("slices", [])]
    if not wanted:
        raise InputError("result.json names no 'slices' of its 2D stack", path=scan.folder / "result.json",
                         **scan.ctx())
    missing = [s for s in wanted if not np.any(index == s)]
    if missing:
        raise InputError(f"slices file lacks the result's slices {missing} (has {index.tolist()})",
                         path=path, **scan.ctx())
    rows = [int(np.flatnonzero(index == s)[0]) for s in wanted]
    return np.moveaxis(images[rows], 0, -1).astype(np.float32)


def input_image(scan: Scan, shape: tuple[int, ...]) -> np.ndarray | None:
    """The model's input image (``expected_input``) on the result grid (``shape``); None when
    the record names none; InputError naming the file when it is missing, unreadable, lacks
    the result's slices or is off the grid."""
    path = expected_input(scan)
    if path is None:
        return None
    if not path.exists():
        raise InputError(f"input image of condition '{scan.condition}' not found (PSNR/SSIM need it)",
                         path=path, **scan.ctx())
    arr = _slices_stack(scan, path) if path.suffix == ".npz" else read_nifti(scan, path)[0]
    return check_grid(scan, arr, path, shape, "result grid")


# result.json "score_name" -> the key of its "scores" dict holding the same value
SCORE_ALIASES = {"mask_size": "mask_size_voxels", "mask_fraction": "mask_size_fraction"}
NOT_SCORES = ("brain_voxels",)


def scan_scores(scan: Scan) -> dict[str, float]:
    """Detection scores of a scan: the primary ``score`` under ``score_name`` plus every other
    entry of the ``scores`` dict (counts that are not scores, e.g. brain_voxels, left out).
    InputError naming result.json without a ``score``, unless the method left the subject out
    (``left_out_reason``: no slice, so no score; the segmentation table counts it)."""
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
    numeric = isinstance(score, dict) or (isinstance(score, (int, float)) and bool(np.isfinite(score)))
    if not numeric and not r.get("left_out_reason"):
        raise InputError(f"result.json of condition '{scan.condition}' has no finite 'score' (got {score!r}): "
                         "the scan cannot enter the detection scores", path=scan.folder / "result.json", **scan.ctx())
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
