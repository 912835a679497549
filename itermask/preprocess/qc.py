"""Quality control of preprocessing: a per-subject picture and statistics (``qc_subject``, the
last stage of the subject's preprocessing job) and rule qc_table's table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from itermask.errors import InputError  # noqa: E402
from itermask.io.atomic import atomic_path, save_figure, write_json  # noqa: E402
from itermask.preprocess.grid import check_same_shape, load_grid_array  # noqa: E402

STAT_NAMES = ("mean", "std", "min", "max", "p1", "p99")


def intensity_stats(volume: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """Mean, std, min, max, 1st and 99th percentile of the intensities inside the brain."""
    v = np.asarray(volume, dtype=np.float64)[np.asarray(brain, dtype=bool)]
    if v.size == 0:
        raise ValueError("empty brain mask")
    p1, p99 = np.percentile(v, [1, 99])
    return {
        "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
        "max": float(v.max()), "p1": float(p1), "p99": float(p99),
    }


def subject_stats(
    volumes: Mapping[str, np.ndarray],
    brain: np.ndarray,
    voxel_volume_ml: float,
    label: np.ndarray | None = None,
) -> dict:
    """Brain (and lesion) volume in ml and intensity statistics per sequence."""
    brain = np.asarray(brain, dtype=bool)
    stats: dict = {
        "brain_volume_ml": float(brain.sum() * voxel_volume_ml),
        "sequences": {name: intensity_stats(vol, brain) for name, vol in volumes.items()},
    }
    if label is not None:
        stats["lesion_volume_ml"] = float(np.asarray(label, dtype=bool).sum() * voxel_volume_ml)
    return stats


def mid_indices(brain: np.ndarray) -> tuple[int, int, int]:
    """Centre of the brain's bounding box (the array centre if the mask is empty)."""
    idx = np.argwhere(np.asarray(brain, dtype=bool))
    if idx.size == 0:
        return tuple(int(s // 2) for s in np.shape(brain))  # type: ignore[return-value]
    return tuple(int(v) for v in (idx.min(axis=0) + idx.max(axis=0)) // 2)  # type: ignore[return-value]


def qc_figure(
    volumes: Mapping[str, np.ndarray],
    brain: np.ndarray,
    label: np.ndarray | None = None,
    title: str = "",
) -> "plt.Figure":
    """Three orthogonal mid-slices per sequence, brain outline in cyan, label outline in red."""
    brain = np.asarray(brain, dtype=bool)
    centre = mid_indices(brain)
    names = list(volumes)
    fig, axes = plt.subplots(len(names), 3, figsize=(9, 3 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        vol = np.asarray(volumes[name], dtype=np.float32)
        inside = vol[brain] if brain.any() else vol.ravel()
        vmin, vmax = np.percentile(inside, [1, 99])
        for col, (axis, view) in enumerate(zip((0, 1, 2), ("sagittal", "coronal", "axial"))):
            ax = axes[row, col]
            take = lambda a: np.take(a, centre[axis], axis=axis).T  # noqa: E731
            ax.imshow(take(vol), cmap="gray", origin="lower", vmin=vmin, vmax=vmax)
            for mask, colour in ((brain, "cyan"), (label, "red")):
                if mask is not None and np.asarray(mask).any():
                    sl = take(np.asarray(mask, dtype=np.float32))
                    if sl.min() < 0.5 <= sl.max():
                        ax.contour(sl, levels=[0.5], colors=colour, linewidths=0.7)
            ax.set_title(f"{name} {view} {centre[axis]}", fontsize=8)
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def flatten_stats(record: Mapping) -> dict:
    """One flat row: identifiers, volumes, then ``{sequence}_{stat}`` columns."""
    row = {k: v for k, v in record.items() if not isinstance(v, Mapping)}
    for seq, stats in record.get("sequences", {}).items():
        for name, value in stats.items():
            row[f"{seq}_{name}"] = value
    return row


def read_qc_record(path: str | Path, *, dataset: str, subject: str) -> dict:
    """One subject's QC JSON (``qc_subject``'s record); InputError naming the file, subject and
    dataset when it cannot be read or holds no record."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the subject's QC statistics ({exc})", path=path, dataset=dataset,
                         subject=subject) from exc
    if not isinstance(record, dict):
        raise InputError("the subject's QC statistics file holds no JSON object", path=path, dataset=dataset,
                         subject=subject)
    return record


def qc_table(json_paths: Mapping[str, str | Path], out_tsv: str | Path, *, dataset: str) -> None:
    """Write one TSV row per subject QC JSON of ``dataset`` (``json_paths``: subject -> file;
    columns: the union of all subjects' keys)."""
    rows = [flatten_stats(read_qc_record(p, dataset=dataset, subject=s)) for s, p in json_paths.items()]
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    lead = [c for c in ("dataset", "subject") if c in columns]
    columns = lead + [c for c in columns if c not in lead]

    def fmt(v: object) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.6g}"
        return str(v)

    lines = ["\t".join(columns)] + ["\t".join(fmt(r.get(c)) for c in columns) for r in rows]
    with atomic_path(out_tsv) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def qc_subject(
    images: Mapping[str, str | Path],
    brainmask_path: str | Path,
    out_png: str | Path,
    out_json: str | Path,
    *,
    label_path: str | Path | None,
    dataset: str,
    subject: str,
) -> None:
    """QC picture (mid-slices with outlines) and statistics JSON of one preprocessed subject."""
    brain, affine = load_grid_array(brainmask_path, "brain mask", dataset, subject)
    brain = brain > 0
    volumes = {}
    for name, path in images.items():
        vol, _ = load_grid_array(path, f"image '{name}'", dataset, subject)
        check_same_shape(vol, brain, path, dataset, subject)
        volumes[name] = vol
    label = None
    if label_path is not None:
        label = load_grid_array(label_path, "label", dataset, subject)[0] > 0
        check_same_shape(label, brain, label_path, dataset, subject)
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    if not brain.any():
        raise InputError("brain mask is empty", path=brainmask_path, dataset=dataset, subject=subject)
    record = {"dataset": dataset, "subject": subject, **subject_stats(volumes, brain, voxel_ml, label=label)}
    fig = qc_figure(volumes, brain, label, title=f"{dataset} / sub-{subject}")
    save_figure(fig, out_png, dpi=80)
    write_json(out_json, record)
