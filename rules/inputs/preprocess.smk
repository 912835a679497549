# Input functions and parameters of the rules in rules/preprocess.smk.


def dataset_of(wildcards):
    return STUDY.datasets[wildcards.dataset]


def raw_files(wildcards):
    """A subject's raw files: {"images": {sequence: path}, "label": path|None, "mask": path|None}."""
    d, s = dataset_of(wildcards), wildcards.subject
    return {"images": {q: d.image(s, q) for q in d.sequences}, "label": d.label(s), "mask": d.mask_file(s)}


def present(wildcards, files):
    """The raw files of `files` (dict) that exist or that a rule makes (the demo dataset).
    A missing raw file is left out of every rule's inputs, so it fails rule check_inputs
    (that subject's first job; --keep-going finishes the others) instead of the DAG build."""
    generated = wildcards.dataset == STUDY.demo_dataset
    return {k: f for k, f in files.items() if f and (generated or Path(f).exists())}


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
