# Input functions and parameters of the rules in rules/infer.smk.


def condition_files(experiment, dataset, subject, condition):
    """Input files of one inference condition (see docs/design.md): {"slices"} for slice
    inputs, else {"image", "hf" (spec.hf), "brain", "label" (path or None)}."""
    s = STUDY.settings(experiment)
    spec = STUDY.condition_spec(experiment, condition)
    if condition in ("val", "lesion", "healthy"):
        files = input_item(spec, s, dataset, subject)
    else:  # an artefact: the corrupted volume (artefacts are volumes)
        w = dict(dataset=dataset, subject=subject, sequence=s.sequence, artefact=condition)
        files = {"subject": subject, "image": path(ART_IMAGE, **w)}
        if spec.hf:
            files["hf"] = path(ART_HF, radius=s.hf_radius, **w)
        files["brain"] = path(BRAIN, dataset=dataset, subject=subject)
    del files["subject"]
    if spec.kind == "volume":
        labelled = condition == "lesion" and STUDY.datasets[dataset].label(subject) is not None
        files["label"] = path(LABEL, dataset=dataset, subject=subject) if labelled else None
    return files


def infer_conditions(wildcards):
    return {
        c: condition_files(wildcards.experiment, wildcards.dataset, wildcards.subject, c)
        for c in STUDY.conditions(wildcards.experiment, wildcards.dataset, wildcards.subject)
    }


def infer_inputs(wildcards):
    files = [f for cond in infer_conditions(wildcards).values() for f in item_files(cond)]
    return {
        "model": path(MODEL, experiment=STUDY.settings(wildcards.experiment).model_owner),
        "files": files,
    }


def inference_runs(experiment, dataset=None):
    """(dataset, subject, folder) of the experiment's inference outputs."""
    return [
        (d, s, path(INFERENCE, experiment=experiment, dataset=d, subject=s))
        for d, s in STUDY.inference_subjects(experiment)
        if dataset is None or d == dataset
    ]

