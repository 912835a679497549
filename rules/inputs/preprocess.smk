# Input functions and parameters of the rules in rules/preprocess.smk. Snakemake calls them
# several times per job while it plans: what follows from the config alone is worked out once
# per subject (functools.cache); whether a raw file exists is asked at every call.
from functools import cache


def dataset_of(wildcards):
    return STUDY.datasets[wildcards.dataset]


@cache
def subject_raw_files(dataset, subject):
    d = STUDY.datasets[dataset]
    return {"images": {q: d.image(subject, q) for q in d.sequences}, "label": d.label(subject), "mask": d.mask_file(subject)}


def raw_files(wildcards):
    """A subject's raw files: {"images": {sequence: path}, "label": path|None, "mask": path|None}
    (one dict per subject, shared by the calls: read it, do not change it)."""
    return subject_raw_files(wildcards.dataset, wildcards.subject)


@cache
def files_made_by_rules():
    """(the demo dataset's raw files, the resolved results folder)."""
    return frozenset(demo_outputs()), Path(R).resolve()


def made_by_a_rule(f):
    """A file the DAG makes: the demo dataset's raw files or anything under the results folder
    (e.g. a derived dataset's brain masks)."""
    demo, results = files_made_by_rules()
    return f in demo or Path(f).resolve().is_relative_to(results)


def present(wildcards, files):
    """The raw files of `files` (dict) that exist or that a rule makes. A missing raw file is
    left out of every rule's inputs, so it fails rule check_inputs (that subject's first job;
    --keep-going finishes the others) instead of the DAG build."""
    return {k: f for k, f in files.items() if f and (Path(f).exists() or made_by_a_rule(f))}


def check_inputs_inputs(wildcards):
    raw = raw_files(wildcards)
    files = {f"image_{q}": f for q, f in raw["images"].items()}
    return present(wildcards, {**files, "label": raw["label"], "mask": raw["mask"]})


def missing_raw_files(wildcards):
    """Raw files missing now (a param of check_inputs: one that disappears reruns the check)."""
    raw = raw_files(wildcards)
    files = [*raw["images"].values(), raw["label"], raw["mask"]]
    there = set(check_inputs_inputs(wildcards).values())
    return sorted(f for f in files if f and f not in there)


def checked(wildcards):
    """The subject's check_inputs report: every job that reads raw files waits for it."""
    return path(INPUTS_CHECKED, dataset=wildcards.dataset, subject=wildcards.subject)


def brain_mask_inputs(wildcards):
    """Raw image whose brain mask serves every sequence of the subject (+ mask file)."""
    d = dataset_of(wildcards)
    files = {"image": d.image(wildcards.subject, d.mask_sequence), "mask": d.mask_file(wildcards.subject)}
    return {**present(wildcards, files), "checked": checked(wildcards)}


def resample_label_inputs(wildcards):
    d = dataset_of(wildcards)
    files = {"label": d.label(wildcards.subject), "image": d.image(wildcards.subject, d.sequences[0])}
    return {**present(wildcards, files), "checked": checked(wildcards)}


def normalise_inputs(wildcards):
    files = {"image": dataset_of(wildcards).image(wildcards.subject, wildcards.sequence)}
    return {**present(wildcards, files), "checked": checked(wildcards)}


def label_of(wildcards):
    """The subject's resampled label, when it has one ([] otherwise)."""
    has = dataset_of(wildcards).label(wildcards.subject) is not None
    return [path(LABEL, dataset=wildcards.dataset, subject=wildcards.subject)] if has else []


def slice_role(wildcards):
    split = dataset_of(wildcards).split_of(wildcards.subject)
    return {"train": "train", "val": "train", "test_lesion": "test"}.get(split, "all")
