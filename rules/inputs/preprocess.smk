# Input functions and parameters of the rules in rules/preprocess.smk.


def dataset_of(wildcards):
    return STUDY.datasets[wildcards.dataset]


def raw_files(wildcards):
    """A subject's raw files: {"images": {sequence: path}, "label": path|None, "mask": path|None}."""
    d, s = dataset_of(wildcards), wildcards.subject
    return {"images": {q: d.image(s, q) for q in d.sequences}, "label": d.label(s), "mask": d.mask_file(s)}


def made_by_a_rule(f):
    """A file the DAG makes: the demo dataset's raw files or anything under the results folder
    (e.g. a derived dataset's brain masks)."""
    global _DEMO_FILES
    if "_DEMO_FILES" not in globals():
        _DEMO_FILES = set(demo_outputs())
    return f in _DEMO_FILES or Path(f).resolve().is_relative_to(Path(R).resolve())


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
    return sorted(f for f in files if f and f not in check_inputs_inputs(wildcards).values())


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
