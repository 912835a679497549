"""Table specs (config ``tables:``, schema in itermask/config/schema.yaml): the papers' tables as
printed. Standard library only (the DAG imports it).

A table has column blocks (test set / sequence / anomaly: ``{key, label, dataset, anomaly}``)
and rows (methods: ``{label, experiment, cells, grey, protocol, absent}``); a cell is one
(experiment, block), evaluated on the block's test dataset (and, for detection, its anomaly).
``experiment`` fills every block, ``cells`` names or overrides the experiment per block key;
a block with no experiment is shown as "–" with the reason from ``absent`` in the caption.
"""
from __future__ import annotations

from typing import Any

from itermask.errors import ConfigError

# metric key -> (printed name, higher is better, factor to the papers' units, digits)
METRICS: dict[str, tuple[str, bool, float, int]] = {
    "dice": ("DSC", True, 100.0, 1), "auroc_voxel": ("AUC", True, 100.0, 1),
    "sensitivity": ("Sens", True, 100.0, 1), "precision": ("Prec", True, 100.0, 1),
    "precision_ref": ("Prec (ref)", True, 100.0, 1), "jaccard": ("Jaccard", True, 100.0, 1),
    "psnr": ("PSNR", True, 1.0, 1), "psnr_ref": ("PSNR (ref)", True, 1.0, 1),
    "ssim": ("SSIM", True, 1.0, 3), "ssim_ref": ("SSIM (ref)", True, 1.0, 3),
    "assd_mm": ("ASSD", False, 1.0, 1),
    "dice_small": ("DS_S", True, 100.0, 1), "dice_medium": ("DS_M", True, 100.0, 1),
    "dice_large": ("DS_L", True, 100.0, 1),
    "auroc": ("AUROC", True, 100.0, 1), "auprc": ("AUPRC", True, 100.0, 1),
    "fpr80": ("FPR80", False, 100.0, 1), "fpr90": ("FPR90", False, 100.0, 1),
    "fnr80": ("FNR80", False, 100.0, 1), "fnr90": ("FNR90", False, 100.0, 1),
}
#: segmentation.tsv protocol of a lesion subject the method left out (no metrics; the reason in threshold_source)
LEFT_OUT = "left_out"
DETECTION_METRICS = ("auroc", "auprc", "fpr80", "fpr90", "fnr80", "fnr90")
DEFINITIONS = {
    "dice": "DSC = 2|P∩G|/(|P|+|G|) (%)",
    "sensitivity": "Sens = |P∩G|/|G| (%)",
    "precision": "Prec = |P∩G|/|P| (%), undefined for an empty prediction (left out of the mean, (k/n))",
    "precision_ref": "Prec (ref) = |P∩G|/|P| (%) with an empty prediction counted as 1 (the reference's rule)",
    "jaccard": "Jaccard = |P∩G|/|P∪G| (%)",
    "auroc_voxel": "AUC = voxel ROC AUC of the error map inside the brain (%; the reference included background)",
    "psnr": "PSNR (dB, ours) = 10·log10(L²/MSE) on healthy brain tissue, L = data range of the input there",
    "psnr_ref": ("PSNR (dB, reference) = 20·log10(peak / √MSE), MSE on healthy brain tissue, peak = the input's "
                 "maximum on healthy brain tissue over the whole test set"),
    "ssim": "SSIM (ours) = scikit-image SSIM map (7-voxel window) averaged over healthy brain tissue",
    "ssim_ref": ("SSIM (reference) = torchmetrics' SSIM (Gaussian window 11, σ 1.5) of input and "
                 "reconstruction masked to healthy brain tissue, averaged over the whole image, data range = "
                 "that of the reconstruction in the brain over the whole test set"),
    "assd_mm": ("ASSD = average symmetric surface distance in mm (2D: in-plane, header pixel spacing; "
                "undefined for an empty mask); the reference computed ITK's average Hausdorff distance"),
    "dice_small": "DS_S/DS_M/DS_L = DSC of subjects with small/medium/large lesions (evaluation.size_bins)",
    "auroc": "AUROC/AUPRC of the scan-level detection score (%)",
    "fpr80": "FPR80/FPR90 = lowest FPR at TPR ≥ 80/90 % (%)",
    "fnr80": ("FNR80/FNR90 = lowest FNR at TNR ≥ 80/90 % (%; the reference's FNR formula differs)"),
}
#: metrics whose value depends on the intensity units of the reconstructed image, and what the caption says
UNIT_DEPENDENT = ("psnr_ref", "ssim", "ssim_ref")
UNITS_TEXT = ("PSNR (ref), SSIM and SSIM (ref) depend on the intensity units a model reconstructs in (PSNR "
              "does not: it scales with the data range): z-scores for 3D models; for 2D models, run slice-wise "
              "on volumes too, the slices' scaling (background −3, 90th brain percentile +3). Compare them "
              "between rows of the same kind")
DEFINITIONS["dice_medium"] = DEFINITIONS["dice_large"] = DEFINITIONS["dice_small"]
DEFINITIONS["auprc"] = DEFINITIONS["auroc"]
DEFINITIONS["fpr90"], DEFINITIONS["fnr90"] = DEFINITIONS["fpr80"], DEFINITIONS["fnr80"]


def row_protocol(spec: dict[str, Any], row: dict[str, Any]) -> str:
    """The row's own protocol, else per_image_best for a grey row, else the table's."""
    if row["protocol"] is not None:
        return row["protocol"]
    return "per_image_best" if row["grey"] else spec["protocol"]


def row_cells(spec: dict[str, Any], row: dict[str, Any]) -> dict[str, str]:
    """block key -> experiment of one row (blocks without an experiment left out)."""
    keys = [b["key"] for b in spec["blocks"]]
    cells = {k: row["experiment"] for k in keys} if row["experiment"] else {}
    cells.update(row["cells"])
    return {k: cells[k] for k in keys if cells.get(k) and k not in row["absent"]}


def table_experiments(spec: dict[str, Any]) -> list[str]:
    """Every experiment a table reads, in order of appearance."""
    return list(dict.fromkeys(e for row in spec["rows"] for e in row_cells(spec, row).values()))


def row_training(spec: dict[str, Any], study: Any) -> dict[str, str]:
    """Row label -> how its models were trained ("450 steps, batch 2"), from the settings of the
    experiments that trained them (``model_from`` followed), naming a model another experiment
    trained ("150 steps, batch 2, the model of IterMask3D": the label of the first row of this
    table that shows the owner, else its experiment name); distinct trainings of one row's blocks
    joined with " / "."""
    labels: dict[str, str] = {}
    for row in spec["rows"]:
        for e in row_cells(spec, row).values():
            labels.setdefault(e, row["label"])
    out = {}
    for row in spec["rows"]:
        texts = []
        for e in row_cells(spec, row).values():
            owner = study.model_experiment(e)
            t = study.settings(owner).train
            length = f"{t.steps} steps" if t.steps is not None else f"{t.epochs} epochs"
            shared = f", the model of {labels.get(owner, owner)}" if owner != e else ""
            texts.append(f"{length}, batch {t.batch_size}{shared}")
        if texts:
            out[row["label"]] = " / ".join(dict.fromkeys(texts))
    return out


def row_settings(spec: dict[str, Any], study: Any) -> dict[str, str]:
    """Row label -> the settings its method states (``Method.describe``) for the experiments of
    its cells (the network of the experiment that trained the model); distinct texts of one
    row's blocks joined with " / "."""
    from dataclasses import replace

    from itermask import methods  # light (no torch); imported here to keep this module stdlib-only

    out = {}
    for row in spec["rows"]:
        texts = []
        for e in row_cells(spec, row).values():
            s = study.settings(e)
            s = replace(s, network=study.settings(study.model_experiment(e)).network)  # the model's network
            texts.append(methods.get(s.method).describe(s))
        texts = [t for t in dict.fromkeys(texts) if t]
        if texts:
            out[row["label"]] = " / ".join(texts)
    return out


def block_settings(spec: dict[str, Any], study: Any) -> dict[str, str]:
    """Block key -> the parameters of its synthetic anomaly (detection blocks of an artefact
    condition; the other-sequence anomaly names the sequence)."""
    from itermask.artefacts.algorithms import base_type, describe_params  # NumPy only

    artefacts = set(study.artefact_conditions())
    out = {}
    for block in spec["blocks"]:
        anomaly = block["anomaly"]
        if spec["kind"] != "detection" or anomaly not in artefacts:
            continue
        kind, params = study.artefact_params(anomaly)
        if base_type(kind) == "other_sequence":
            out[block["key"]] = f"the subject's {study.config['artefacts']['other_sequence']} scan"
        else:
            out[block["key"]] = describe_params(kind, params)
    return out


def caption_context(spec: dict[str, Any], study: Any) -> dict[str, Any]:
    """What a table's caption states from the configuration (tables.caption): each row's
    training and settings, each detection block's anomaly parameters, the lesion size bins."""
    return {"training": row_training(spec, study), "settings": row_settings(spec, study),
            "anomalies": block_settings(spec, study), "size_bins": list(study.evaluation.size_bins)}


def check_table(spec: dict[str, Any], experiments: dict[str, Any]) -> None:
    """ConfigError naming the table for an unknown experiment, block key or metric kind."""
    where = f"config key 'tables' ({spec['name']})"
    keys = [b["key"] for b in spec["blocks"]]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{where}: block keys repeat: {keys}")
    bad = [m for m in spec["metrics"] if (m in DETECTION_METRICS) != (spec["kind"] == "detection")]
    if bad:
        raise ConfigError(f"{where}: a {spec['kind']} table cannot show metrics {bad}")
    for row in spec["rows"]:
        unknown = set(row["cells"]) - set(keys)
        if unknown:
            raise ConfigError(f"{where}, row '{row['label']}': cells name unknown blocks {sorted(unknown)}")
        for e in row_cells(spec, row).values():
            if e not in experiments:
                raise ConfigError(f"{where}, row '{row['label']}': '{e}' is not an experiment")
