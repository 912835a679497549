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


def fixed_tau_input(experiment):
    return [path(FIXED_TAU, experiment=experiment)] if STUDY.needs_fixed_tau(experiment) else []


def infer_group(wildcards):
    """Cluster group of an infer job. Jobs that wait for a fixed tau (computed from another
    experiment's validation inference) get their own group: in the common group, a group job
    holding a validation run and a fixed-tau run would depend on itself through fixed_tau."""
    return "inference_fixed" if fixed_tau_input(wildcards.experiment) else "inference"


def infer_inputs(wildcards):
    files = [f for cond in infer_conditions(wildcards).values() for f in item_files(cond)]
    return {
        "model": path(MODEL, experiment=STUDY.settings(wildcards.experiment).model_owner),
        "files": files,
        "fixed_tau": fixed_tau_input(wildcards.experiment),
    }


def inference_runs(experiment, dataset=None):
    """(dataset, subject, folder) of the experiment's inference outputs."""
    return [
        (d, s, path(INFERENCE, experiment=experiment, dataset=d, subject=s))
        for d, s in STUDY.inference_subjects(experiment)
        if dataset is None or d == dataset
    ]


def fixed_tau_runs(wildcards):
    """Validation-subject inference of the experiment that owns the model (subject thresholds)."""
    src = STUDY.settings(wildcards.experiment).model_owner
    dataset = STUDY.settings(src).dataset
    val = STUDY.datasets[dataset].splits.get("val", ())
    return [(dataset, s, path(INFERENCE, experiment=src, dataset=dataset, subject=s)) for s in val]
