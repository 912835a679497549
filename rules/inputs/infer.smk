# Input functions and parameters of the rules in rules/infer.smk.
from functools import cache
from types import SimpleNamespace

from itermask.artefacts.failed_skullstrip import selected_subjects
from itermask.config.conditions import FAILED_SKULLSTRIP as FAILED_STRIP, LESION_CONDITIONS, PLAIN_SCANS


def condition_files(experiment, dataset, subject, condition):
    """Input files of one inference condition (see docs/design.md): {"slices"} for slice
    inputs, else {"image", "hf" (spec.hf), "brain", "label" (path or None)}."""
    s = STUDY.settings(experiment)
    spec = STUDY.condition_spec(experiment, condition)
    if condition == FAILED_STRIP:  # the scan preprocessed with its outlying mask (derived dataset)
        files = input_item(spec, s, STUDY.failed_strip_dataset(dataset), subject)
    elif condition in PLAIN_SCANS or condition == STUDY.datasets[dataset].anomaly:
        files = input_item(spec, s, dataset, subject)
    else:  # an artefact: the corrupted volume (artefacts are volumes)
        w = dict(dataset=dataset, subject=subject, sequence=s.sequence, artefact=condition)
        files = {"subject": subject, "image": path(ART_IMAGE, **w)}
        if spec.hf:
            files["hf"] = path(ART_HF, radius=s.hf_radius, **w)
        files["brain"] = path(BRAIN, dataset=dataset, subject=subject)
    del files["subject"]
    if spec.kind == "volume":
        labelled = condition in LESION_CONDITIONS and STUDY.datasets[dataset].label(subject) is not None
        files["label"] = path(LABEL, dataset=dataset, subject=subject) if labelled else None
    return files


def infer_conditions(wildcards, input=None):
    """Conditions of the run -> their files. A failed-strip candidate gets FAILED_STRIP when its
    set's TSV (an input) selects it: read when the job runs (a missing TSV, as in a dry-run,
    leaves the parameter to be determined); `input=None` lists only the fixed conditions."""
    conditions = STUDY.conditions(wildcards.experiment, wildcards.dataset, wildcards.subject)
    if input is not None and failed_strip_inputs(wildcards):
        tsv = path(FAILED_SKULLSTRIP, dataset=wildcards.dataset)
        if wildcards.subject in selected_subjects(tsv):
            conditions = [*conditions, FAILED_STRIP]
    return {c: condition_files(wildcards.experiment, wildcards.dataset, wildcards.subject, c) for c in conditions}


def failed_strip_inputs(wildcards):
    """The set's TSV and the candidate's failed-strip scan files, when the run may get the condition."""
    if not STUDY.failed_strip_candidate(wildcards.experiment, wildcards.dataset, wildcards.subject):
        return []
    files = condition_files(wildcards.experiment, wildcards.dataset, wildcards.subject, FAILED_STRIP)
    return [path(FAILED_SKULLSTRIP, dataset=wildcards.dataset), *item_files(files)]


def infer_inputs(wildcards):
    files = [f for cond in infer_conditions(wildcards).values() for f in item_files(cond)]
    files += failed_strip_inputs(wildcards)
    return {
        "model": path(MODEL, experiment=STUDY.settings(wildcards.experiment).model_owner),
        "files": files + STUDY.method_files(wildcards.experiment, "infer"),
    }


def infer_runs(wildcards, input, output):
    """The `runs` parameter of a one-subject job (workflow_scripts/infer.py)."""
    return [{"dataset": wildcards.dataset, "subject": wildcards.subject,
             "conditions": infer_conditions(wildcards, input), "out_dir": output[0]}]


def inference_chunks(per_job):
    """(experiment, dataset, chunk index, subjects) of the multi-subject inference jobs:
    each experiment's subjects of one dataset in groups of `per_job` (0: all of them)."""
    chunks = []
    for experiment in STUDY.experiments:
        by_dataset = {}
        for d, s in STUDY.inference_subjects(experiment):
            by_dataset.setdefault(d, []).append(s)
        for d, subjects in by_dataset.items():
            chunks += [(experiment, d, k, chunk) for k, chunk in chunks_of(subjects, per_job)]
    return chunks


def _subject_wildcards(experiment, dataset, subject):
    return SimpleNamespace(experiment=experiment, dataset=dataset, subject=subject)


def chunk_inputs(experiment, dataset, subjects):
    """Input function of a multi-subject inference job: the model and every subject's files."""

    def inputs(wildcards):
        per = [infer_inputs(_subject_wildcards(experiment, dataset, s)) for s in subjects]
        return {"model": per[0]["model"], "files": list(dict.fromkeys(f for p in per for f in p["files"]))}

    return inputs


def chunk_runs(experiment, dataset, subjects):
    """The `runs` parameter of a multi-subject inference job (one entry per subject)."""

    def runs(wildcards, input):
        return [{"dataset": dataset, "subject": s,
                 "conditions": infer_conditions(_subject_wildcards(experiment, dataset, s), input),
                 "out_dir": path(INFERENCE, experiment=experiment, dataset=dataset, subject=s)} for s in subjects]

    return runs


def inference_runs(experiment, dataset=None):
    """(dataset, subject, folder) of the experiment's inference outputs."""
    return [
        (d, s, path(INFERENCE, experiment=experiment, dataset=d, subject=s))
        for d, s in STUDY.inference_subjects(experiment)
        if dataset is None or d == dataset
    ]


@cache
def inference_settings(experiment):
    """Param of the inference rules: the experiment's settings as an inference job reads them
    (``ExperimentSettings.for_inference``), one dict per experiment shared by its jobs (read it,
    do not change it): a cohort's dry-run asks for it once per subject."""
    return STUDY.settings(experiment).for_inference().to_dict()
