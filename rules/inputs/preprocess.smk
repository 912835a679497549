# Input functions and parameters of the rules in rules/preprocess.smk.


def dataset_of(wildcards):
    return STUDY.datasets[wildcards.dataset]


def brain_mask_inputs(wildcards):
    """Raw image whose brain mask serves every sequence of the subject (+ mask file)."""
    d = dataset_of(wildcards)
    files = {"image": d.image(wildcards.subject, d.mask_sequence)}
    if d.mask_file(wildcards.subject):
        files["mask"] = d.mask_file(wildcards.subject)
    return files


def resample_label_inputs(wildcards):
    d = dataset_of(wildcards)
    return {"label": d.label(wildcards.subject), "image": d.image(wildcards.subject, d.sequences[0])}


def label_of(wildcards):
    """The subject's resampled label, when it has one ([] otherwise)."""
    has = dataset_of(wildcards).label(wildcards.subject) is not None
    return [path(LABEL, dataset=wildcards.dataset, subject=wildcards.subject)] if has else []


def slice_role(wildcards):
    split = dataset_of(wildcards).split_of(wildcards.subject)
    return {"train": "train", "val": "train", "test_lesion": "test"}.get(split, "all")
