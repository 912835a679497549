"""Figures of one experiment (PNG, written atomically, each with its plotted numbers as a CSV of
the same stem beside it): overlays, threshold curves (threshold_figure), ROC curves and severity
sweeps (IterMask3D Fig. 5 style), parameter sensitivity (Fig. 3 style; detection_figures).

Only data from the inference folders and the metric TSVs are drawn; a figure whose data are
absent is not written (nor returned), and the reason is logged. Detection figures and
summaries are per test dataset, never pooled (METHOD.md §7).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from itermask.config.conditions import LESION  # noqa: E402
from itermask.errors import InputError  # noqa: E402
from itermask.evaluation.detection_figures import roc_figure, sensitivity_figure, severity_figure  # noqa: E402
from itermask.evaluation.figure_data import csv_beside, write_csv  # noqa: E402
from itermask.evaluation.scans import Scan, discover, input_image  # noqa: E402
from itermask.evaluation.spec import LEFT_OUT  # noqa: E402
from itermask.evaluation.threshold_figure import threshold_curve_figure  # noqa: E402
from itermask.io.atomic import atomic_dir, save_figure  # noqa: E402

log = logging.getLogger(__name__)

#: contour colours of the thresholded masks (protocols), in the order of segmentation.tsv
THRESHOLD_COLOURS = ("cyan", "magenta", "lime", "orange", "deepskyblue", "white")
OVERLAY_COLUMNS = ["dataset", "subject", "slice", "layer", "threshold", "colour", "voxels"]


def _arr(path: Path, dtype: type = np.float32) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=dtype)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# ----------------------------------------------------------------------------- overlays
def _overlay_layers(scan: Scan, brain: np.ndarray, error: np.ndarray, thresholds: dict[str, float],
                    logger: logging.Logger) -> list[tuple[str, float, str, np.ndarray]]:
    """(layer, threshold, colour, mask) of the final-mask panel: the iterative mask when the
    method writes one (not baselines), then each protocol's thresholded map; a threshold that is
    not finite or finds no colour is not drawn (colour '', logged)."""
    layers = []
    if (scan.folder / "mask.nii.gz").exists():
        layers.append(("iterative_mask", float("nan"), "yellow", _arr(scan.folder / "mask.nii.gz", np.uint8) > 0))
    colours = iter(THRESHOLD_COLOURS)
    for name, theta in thresholds.items():
        mask = brain & (error > theta) if np.isfinite(theta) else np.zeros_like(brain)
        colour = next(colours, "") if np.isfinite(theta) else ""
        if not colour:
            why = "no finite threshold" if not np.isfinite(theta) else f"more than {len(THRESHOLD_COLOURS)} thresholds"
            logger.info("overlay %s sub-%s: %s not drawn (%s)", scan.dataset, scan.subject, name, why)
        layers.append((name, theta, colour, mask))
    return layers


def overlay_figure(scan: Scan, thresholds: dict[str, float], out_png: str, *, logger: logging.Logger = log) -> str:
    """Input image, error map, final masks and ground truth on the slice with most lesion; the
    contours' thresholds and voxel counts on that slice as ``<stem>.csv``."""
    f = scan.folder
    error = _arr(f / "error.nii.gz")
    brain = _arr(f / "brainmask.nii.gz", np.uint8) > 0
    label = _arr(f / "label.nii.gz", np.uint8) > 0
    image = input_image(scan, error.shape)
    title0 = "input"
    if image is None:
        image, title0 = _arr(f / "recon.nii.gz"), "reconstruction (input unavailable)"
    k = int(np.argmax(label.sum(axis=(0, 1))))
    slices = scan.result.get("slices") or []
    where = f"slice {slices[k]}" if scan.is_2d and k < len(slices) else f"axial index {k}"
    show = lambda a: np.rot90(a[:, :, k])  # noqa: E731  RAS: anterior up, right on the left of the screen
    fig, ax = plt.subplots(1, 4, figsize=(13, 3.6))
    ax[0].imshow(show(image), cmap="gray")
    ax[0].set_title(title0)
    im = ax[1].imshow(show(np.where(brain, error, 0)), cmap="inferno")
    fig.colorbar(im, ax=ax[1], fraction=0.046)
    ax[1].set_title("error map E")
    ax[2].imshow(show(image), cmap="gray")
    layers = _overlay_layers(scan, brain, error, thresholds, logger)
    legend = []
    for name, theta, colour, mask in layers:
        if colour:
            ax[2].contour(show(mask.astype(float)), levels=[0.5], colors=colour, linewidths=1)
            legend.append(f"{name} ({colour})" if np.isnan(theta) else f"{name} θ={theta:.3g} ({colour})")
    ax[2].set_title("final masks", fontsize=9)
    ax[2].text(0.01, 0.01, "\n".join(legend) or "no mask", transform=ax[2].transAxes, color="w", fontsize=6,
               va="bottom", bbox={"facecolor": "black", "alpha": 0.6, "pad": 2})
    ax[3].imshow(show(image), cmap="gray")
    ax[3].contour(show(label.astype(float)), levels=[0.5], colors="red", linewidths=1)
    ax[3].set_title("ground truth")
    for a in ax:
        a.axis("off")
    fig.suptitle(f"{scan.dataset} sub-{scan.subject}, {where}")
    rows = [[scan.dataset, scan.subject, k, n, t, c, int(m[:, :, k].sum())] for n, t, c, m in layers]
    rows.append([scan.dataset, scan.subject, k, "ground_truth", float("nan"), "red", int(label[:, :, k].sum())])
    write_csv(pd.DataFrame(rows, columns=OVERLAY_COLUMNS), csv_beside(out_png))
    save_figure(fig, out_png, dpi=110, bbox_inches="tight")
    return out_png


def _is_error_map_threshold(row: Any) -> bool:
    """A row whose threshold binarises the final error map: every protocol but IterMask's own
    per-image-best oracle (``oracle`` itermask / itermask_final: its mask, not such a threshold)."""
    oracle = str(getattr(row, "oracle", "") or "")
    return row.protocol != "per_image_best" or oracle in ("", "nan", "error_map")


def _overlays(scans: list[Scan], seg: pd.DataFrame, out: Path, logger: logging.Logger) -> list[str]:
    """One overlay per lesion test scan with a label; the others are logged."""
    written = []
    lesion = [s for s in scans if s.condition == LESION]
    if not lesion:
        logger.info("skipped overlays: no lesion test scans")
    for s in lesion:
        if not (s.folder / "label.nii.gz").exists():
            logger.info("skipped overlay of %s sub-%s: no label.nii.gz in %s", s.dataset, s.subject, s.folder)
            continue
        rows = seg[(seg["subject"].astype(str) == s.subject) & (seg["dataset"].astype(str) == s.dataset)]
        th = {r.protocol: float(r.threshold) for r in rows.itertuples()
              if r.protocol not in ("iterative_mask", LEFT_OUT) and _is_error_map_threshold(r)}
        for r in rows.itertuples():
            if r.protocol not in th and r.protocol not in ("iterative_mask", LEFT_OUT):
                logger.info("overlay %s sub-%s: %s not drawn (IterMask's own oracle mask, not a threshold of "
                            "the final error map)", s.dataset, s.subject, r.protocol)
        name = f"overlay_{_safe(s.dataset)}_sub-{_safe(s.subject)}.png"
        written.append(overlay_figure(s, th, str(out / name), logger=logger))
    return written


# ----------------------------------------------------------------------------- stages
def make_figures(
    experiment: str, runs: Sequence[tuple[str, str, str | Path]], segmentation_tsv: str, scores_tsv: str,
    out_dir: str, *, severity: Mapping[str, Any] | None = None, logger: logging.Logger = log,
) -> list[str]:
    """Stage: write every figure whose data exist for one experiment, each PNG with its data as
    ``<stem>.csv`` beside it; returns the PNGs' paths and logs every figure skipped and why.
    ``runs``: (dataset, subject, inference folder) of every subject the experiment ran on;
    ``severity``: config ``artefacts.severity`` (the severity figure's x values). The folder is
    filled under a temporary name and renamed whole (no partial folder after a kill)."""
    scans = discover(runs)
    seg = pd.read_csv(segmentation_tsv, sep="\t")
    scores = pd.read_csv(scores_tsv, sep="\t")
    with atomic_dir(out_dir) as out:
        written = _overlays(scans, seg, out, logger)
        for path in (
            threshold_curve_figure(scans, str(out / "threshold_curves.png"), logger=logger),
            roc_figure(scores, experiment, str(out / "roc.png"), logger=logger),
            severity_figure(scores, experiment, str(out / "severity.png"), severity=severity, logger=logger),
        ):
            if path is not None:
                written.append(path)
    logger.info("%s: %d figures written (each with a .csv of its data)", experiment, len(written))
    return [str(Path(out_dir) / Path(p).name) for p in written]


def primary_protocol(protocols: Sequence[str]) -> str:
    """The protocol of a one-protocol figure: ``honest`` when evaluated, else the first configured."""
    return "honest" if "honest" in protocols else protocols[0]


def sensitivity_stage(segmentation_tsvs: dict[str, str], values: dict[str, float], parameter: str, out_png: str,
                      *, protocols: Sequence[str], logger: logging.Logger = log, out_csv: str | None = None,
                      experiment: str | None = None) -> str:
    """Stage (rule sensitivity): `sensitivity_figure` of the Dice under the primary protocol of
    ``protocols`` per test dataset, its points in ``out_csv`` (default beside the PNG);
    InputError when no experiment has a finite Dice under it (nothing written)."""
    protocol = primary_protocol(protocols)
    logger.info("%s: %s (protocol %s)", parameter, values, protocol)
    if sensitivity_figure(segmentation_tsvs, values, parameter, out_png, protocol=protocol, metric="dice",
                          experiment=experiment, out_csv=out_csv, logger=logger) is None:
        raise InputError(f"no finite Dice under protocol '{protocol}' in any of {sorted(segmentation_tsvs.values())}")
    return out_png
