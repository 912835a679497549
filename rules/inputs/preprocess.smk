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


@cache
def files_made_by_rules():
    """(the demo dataset's raw files, the resolved results folder)."""
    return frozenset(demo_outputs()), Path(R).resolve()


def made_by_a_rule(f):
    """A file the DAG makes: the demo dataset's raw files or anything under the results folder
    (e.g. a derived dataset's brain masks)."""
    demo, results = files_made_by_rules()
    return f in demo or Path(f).resolve().is_relative_to(results)


def available(f):
    """Whether raw file `f` exists or a rule makes it."""
    return Path(f).exists() or made_by_a_rule(f)


def present(files):
    """The raw files of `files` (dict) that are `available`. A missing raw file is
    left out of every rule's inputs, so it fails the subject's preprocess_subject job (its input
    check; --keep-going finishes the others) instead of the DAG build."""
    return {k: f for k, f in files.items() if f and available(f)}


def preprocess_inputs(dataset):
    """Input function of preprocess_subject__<dataset>: the subject's raw files (every sequence,
    label, brain-mask file) that are there."""

    def inputs(wildcards):
        raw = subject_raw_files(dataset, wildcards.subject)
        files = {f"image_{q}": f for q, f in raw["images"].items()}
        return present({**files, "label": raw["label"], "mask": raw["mask"]})

    return signed(inputs)


def raw_files(dataset):
    """Param of preprocess_subject__<dataset>: the subject's raw files as declared,
    {"images": {sequence: path}, "label": path|None, "mask": path|None} (one dict per subject,
    shared by the calls: read it, do not change it)."""

    def raw(wildcards):
        return subject_raw_files(dataset, wildcards.subject)

    return signed(raw)


def missing_raw_files(dataset):
    """Param of preprocess_subject__<dataset>: raw files missing now (one that disappears reruns
    the subject's job)."""

    def missing(wildcards):
        raw = subject_raw_files(dataset, wildcards.subject)
        files = [*raw["images"].values(), raw["label"], raw["mask"]]
        return sorted(f for f in files if f and not available(f))

    return signed(missing)


def sequence_outputs(d):
    """Per sequence of dataset `d`: its normalised image (image_<sequence>) and HF image at
    preprocess.hf_radius (hf_<sequence>), the subject wildcard kept."""
    radius = STUDY.preprocess.hf_radius
    images = {f"image_{q}": at(IMAGE, dataset=d.name, sequence=q) for q in d.sequences}
    return {**images, **{f"hf_{q}": at(HF, dataset=d.name, sequence=q, radius=radius) for q in d.sequences}}


def preprocess_settings(d):
    """Param of preprocess_subject__<dataset>: itermask.preprocess.preprocess_subject.PreprocessParams'
    fields but the device (resolved in the job)."""
    p = STUDY.preprocess
    return {"mask_method": d.mask_method, "mask_sequence": d.mask_sequence, "spacing_mm": p.spacing_mm,
            "box": list(p.box), "zscore_repeats": p.zscore_repeats, "zscore_clip_sd": p.zscore_clip_sd,
            "background": p.background, "hf_radius": p.hf_radius}


@signed
def checked(wildcards):
    """The subject's input-check report (preprocess_subject): a job that reads raw files waits for it."""
    return path(INPUTS_CHECKED, dataset=wildcards.dataset, subject=wildcards.subject)


@signed
def resample_label_inputs(wildcards):
    d = dataset_of(wildcards)
    files = {"label": d.label(wildcards.subject), "image": d.image(wildcards.subject, d.sequences[0])}
    return {**present(files), "checked": checked(wildcards)}


@signed
def label_of(wildcards):
    """The subject's resampled label, when it has one ([] otherwise)."""
    has = dataset_of(wildcards).label(wildcards.subject) is not None
    return [path(LABEL, dataset=wildcards.dataset, subject=wildcards.subject)] if has else []


@signed
def slice_role(wildcards):
    split = dataset_of(wildcards).split_of(wildcards.subject)
    return {"train": "train", "val": "train", "test_lesion": "test"}.get(split, "all")


@signed
def radius_of(wildcards):
    """The {radius} wildcard as a number (param of the HF and slice rules)."""
    return int(wildcards.radius)


@signed
def sequences_of(wildcards):
    """The dataset's sequences (param of qc_subject)."""
    return list(dataset_of(wildcards).sequences)


@signed
def images_of(wildcards):
    """The subject's normalised images, one per sequence of its dataset (qc_subject's input)."""
    w = wildcards
    return [path(IMAGE, dataset=w.dataset, subject=w.subject, sequence=q) for q in dataset_of(w).sequences]
