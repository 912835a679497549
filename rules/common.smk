# Helpers shared by all rules: the validated study, paths and input functions.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))
from itermask.config.study import Study  # noqa: E402

STUDY = Study(config, base_dir=Path(workflow.basedir))
R = STUDY.results
DEVICE = config.get("device", "auto")
SEED = config.get("seed", 0)
RES = {
    "gpu": 1,
    "threads": 2,
    "train_runtime": 240,
    "train_mem_mb": 16000,
    "infer_runtime": 60,
    "infer_mem_mb": 12000,
    **config.get("resources", {}),
}
PRE = f"{R}/preproc/{{dataset}}/sub-{{subject}}"


wildcard_constraints:
    dataset="[A-Za-z0-9]+",
    subject="[A-Za-z0-9]+",
    sequence=r"(?!(?:label|brainmask)\b)[A-Za-z0-9]+",  # label/brainmask.nii.gz are not sequences
    experiment="[A-Za-z0-9_]+",
    param="tau_percentile|hf_radius|gamma",
    artefact="[a-z_0-9]+(-s[0-9]+)?",
    name="[A-Za-z0-9_]+",


def ds(wildcards):
    return STUDY.datasets[wildcards.dataset]


def raw_image(wildcards):
    return ds(wildcards).image(wildcards.subject, wildcards.sequence)


def raw_mask_source(wildcards):
    """Raw image whose brain mask serves every sequence of the subject (+ mask file)."""
    d = ds(wildcards)
    files = {"image": d.image(wildcards.subject, d.mask_sequence)}
    if d.mask_file(wildcards.subject):
        files["mask"] = d.mask_file(wildcards.subject)
    return files


def raw_label(wildcards):
    d = ds(wildcards)
    return {
        "label": d.label(wildcards.subject),
        "image": d.image(wildcards.subject, d.sequences[0]),
    }


def has_label(dataset, subject):
    return STUDY.datasets[dataset].label(subject) is not None


def label_of(dataset, subject):
    return [f"{PRE.format(dataset=dataset, subject=subject)}/label.nii.gz"] if has_label(dataset, subject) else []


def slice_role(wildcards):
    split = ds(wildcards).split_of(wildcards.subject)
    return {"train": "train", "val": "train", "test_lesion": "test"}.get(split, "all")


def preprocessed(dataset, subject, sequence):
    base = PRE.format(dataset=dataset, subject=subject)
    return {"image": f"{base}/{sequence}.nii.gz", "hf": f"{base}/{sequence}_hf.nii.gz", "brain": f"{base}/brainmask.nii.gz"}


def subject_inputs(dataset):
    d = STUDY.datasets[dataset]
    return d.subjects


def demo_outputs():
    name = STUDY.demo_dataset
    if name is None:
        return []
    d = STUDY.datasets[name]
    files = [d.image(s, q) for s in d.subjects for q in d.sequences]
    files += [d.label(s) for s in d.subjects if d.label(s)]
    return files


def qc_targets():
    out = []
    for name, d in STUDY.datasets.items():
        out.append(f"{R}/qc/{name}_qc.tsv")
    return out


def sensitivity_targets():
    return [f"{R}/figures/sensitivity/{exp}_{param}.png" for exp, param in STUDY.sweeps]


def all_targets():
    """QC, metrics of every experiment (sweeps' derived ones included), per-experiment figures
    of the configured experiments, sensitivity figures, tables."""
    targets = qc_targets()
    for exp in STUDY.experiments:
        targets.append(f"{R}/metrics/{exp}/segmentation.tsv")
    for exp in STUDY.config["experiments"]:
        targets.append(f"{R}/figures/{exp}")
    targets += sensitivity_targets()
    for table in STUDY.config.get("tables", []):
        targets += [f"{R}/tables/{table['name']}.{ext}" for ext in ("md", "csv", "tex")]
    targets += failed_skullstrip_targets()
    return targets


# -- artefacts, training, inference -------------------------------------------------------
ART = f"{R}/artefacts/{{dataset}}/{{sequence}}/sub-{{subject}}/{{artefact}}"


def artefact_inputs(wildcards):
    kinds = {STUDY.artefact_params(a)[0] for a in STUDY.artefact_conditions()}
    files = {
        "image": preprocessed(wildcards.dataset, wildcards.subject, wildcards.sequence)["image"],
        "brain": f"{PRE.format(dataset=wildcards.dataset, subject=wildcards.subject)}/brainmask.nii.gz",
    }
    if "other_sequence" in kinds:
        other = config["artefacts"]["other_sequence"]
        files["other"] = preprocessed(wildcards.dataset, wildcards.subject, other)["image"]
    return files


def condition_files(experiment, dataset, subject, condition):
    """Input files of one inference condition (see docs/design.md)."""
    exp = STUDY.experiment(experiment)
    seq = exp["sequence"]
    base = PRE.format(dataset=dataset, subject=subject)
    if exp["method"] == "itermask2" and condition in ("val", "lesion"):
        return {"slices": f"{base}/{seq}_slices2d.npz"}
    if condition in ("val", "lesion", "healthy"):
        files = dict(preprocessed(dataset, subject, seq))
    else:
        art = ART.format(dataset=dataset, sequence=seq, artefact=condition, subject=subject)
        files = {"image": f"{art}/image.nii.gz", "hf": f"{art}/hf.nii.gz", "brain": f"{base}/brainmask.nii.gz"}
    files["label"] = f"{base}/label.nii.gz" if condition == "lesion" and has_label(dataset, subject) else None
    return files


def infer_conditions(wildcards):
    return {
        c: condition_files(wildcards.experiment, wildcards.dataset, wildcards.subject, c)
        for c in STUDY.conditions(wildcards.experiment, wildcards.dataset, wildcards.subject)
    }


def model_path(experiment):
    return f"{R}/models/{STUDY.model_experiment(experiment)}/model.pt"


def fixed_tau_input(experiment):
    exp = STUDY.experiment(experiment)
    infer = exp.get("infer", {})
    if exp["method"] == "itermask3d" and infer.get("threshold") == "fixed" and infer.get("fixed_tau") is None:
        return [f"{R}/models/{experiment}/fixed_tau.json"]
    return []


def infer_group(wildcards):
    """Cluster group of an infer job. Jobs that wait for a fixed tau (computed from another
    experiment's validation inference) get their own group: in the common group, a group job
    holding a validation run and a fixed-tau run would depend on itself through fixed_tau."""
    return "inference_fixed" if fixed_tau_input(wildcards.experiment) else "inference"


def infer_inputs(wildcards):
    files = [f for cond in infer_conditions(wildcards).values() for f in cond.values() if f]
    return {"model": model_path(wildcards.experiment), "files": files, "fixed_tau": fixed_tau_input(wildcards.experiment)}


def infer_settings(wildcards):
    exp = STUDY.experiment(wildcards.experiment)
    cfg = dict(exp.get("infer", {}))
    cfg.update(method=exp["method"], variant=exp["variant"])
    radius = STUDY.hf_radius(wildcards.experiment)
    if radius != STUDY.stored_hf_radius(wildcards.experiment):
        cfg["hf_radius"] = radius  # the stored HF inputs are at another radius: recompute at this one
    return cfg


def inference_dirs(experiment, dataset=None):
    return [
        f"{R}/inference/{experiment}/{d}/sub-{s}"
        for d, s in STUDY.inference_subjects(experiment)
        if dataset is None or d == dataset
    ]


def fixed_tau_dirs(wildcards):
    """Validation-subject inference of the experiment that owns the model (subject thresholds)."""
    src = STUDY.model_experiment(wildcards.experiment)
    exp = STUDY.experiment(src)
    val = STUDY.datasets[exp["dataset"]].splits.get("val", ())
    return [f"{R}/inference/{src}/{exp['dataset']}/sub-{s}" for s in val]


def train_items(experiment, split):
    exp = STUDY.experiment(experiment)
    d = STUDY.datasets[exp["dataset"]]
    seq = exp["sequence"]
    subjects = d.splits.get(split, ())
    if exp["method"] == "itermask2":
        return [{"subject": s, "slices": f"{PRE.format(dataset=d.name, subject=s)}/{seq}_slices2d.npz"} for s in subjects]
    return [{"subject": s, **preprocessed(d.name, s, seq)} for s in subjects]


def train_inputs(wildcards):
    items = train_items(wildcards.experiment, "train") + train_items(wildcards.experiment, "val")
    return sorted({v for item in items for k, v in item.items() if k != "subject"})


def sensitivity_inputs(wildcards):
    members = STUDY.sweep_members(wildcards.experiment, wildcards.param)
    return {e: f"{R}/metrics/{e}/segmentation.tsv" for e in members}


def table_spec(name):
    for table in config.get("tables", []):
        if table["name"] == name:
            return table
    raise ValueError(f"unknown table '{name}'")


# -- real-artefact sets: failed skull-stripping (rules/realartefacts.smk) -----------------
# Enabled per dataset with `failed_skullstrip_set: {enabled: true, n_subjects: N}`.
def failed_skullstrip_settings(dataset):
    return STUDY.config["datasets"][dataset].get("failed_skullstrip_set", {})


def failed_skullstrip_targets():
    return [
        f"{R}/qc/{name}_failed_skullstrip.tsv"
        for name in STUDY.datasets
        if failed_skullstrip_settings(name).get("enabled", False)
    ]


def failed_skullstrip_inputs(wildcards):
    """Raw image of the stripped sequence and the native brain mask, per subject (same order)."""
    d = ds(wildcards)
    return {
        "images": [d.image(s, d.mask_sequence) for s in d.subjects],
        "masks": [f"{PRE.format(dataset=d.name, subject=s)}/native_brainmask.nii.gz" for s in d.subjects],
    }
