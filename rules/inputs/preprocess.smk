# Input functions and parameters of the rules in rules/preprocess.smk. Snakemake calls them
# several times per job while it plans: what follows from the config alone is worked out once
# per subject (functools.cache); whether a raw file exists is asked at every call.
from functools import cache
from types import SimpleNamespace

from itermask.config.preprocess_plan import id_pattern, labelled_subjects, slice_role as split_role, slice_sequences

ID = "[A-Za-z0-9]"  # a character of a subject ID (rules/common.smk's subject constraint)
# Radii of the slices that rule slices2d makes (any but preprocess.slices2d.hf_radius, which the
# preprocessing rules write).
OTHER_SLICE_RADIUS = radius_other_than(STUDY.preprocess.slices2d.hf_radius)


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
        return sorted(f for f in STUDY.datasets[dataset].raw_files(wildcards.subject) if not available(f))

    return signed(missing)


def sequence_outputs(d):
    """Per sequence of dataset `d`: its normalised image (image_<sequence>) and HF image at
    preprocess.hf_radius (hf_<sequence>), the subject wildcard kept."""
    radius = STUDY.preprocess.hf_radius
    images = {f"image_{q}": at(IMAGE, dataset=d.name, sequence=q) for q in d.sequences}
    return {**images, **{f"hf_{q}": at(HF, dataset=d.name, sequence=q, radius=radius) for q in d.sequences}}


@cache
def slices_written():
    """(dataset, labelled) -> the sequences whose slices at preprocess.slices2d.hf_radius the
    subjects' preprocessing jobs write (the ones some experiment reads)."""
    return slice_sequences(STUDY)


def preprocess_rules():
    """(dataset, labelled) of the per-subject preprocessing rules: per dataset one for its
    subjects without a label, one for those with one (each only if it has such subjects; a
    dataset without subjects keeps the first, so its pattern error stays the rule's)."""
    rules = []
    for d in STUDY.datasets.values():
        n = len(labelled_subjects(d))
        rules += [(d, False)] if n < len(d.subjects) or not n else []
        rules += [(d, True)] if n else []
    return rules


def subject_constraint(d, labelled):
    """The subject wildcard of preprocess_labelled__<dataset> (its labelled IDs) or
    preprocess_subject__<dataset> (any other ID); a trie regex (itermask.config.preprocess_plan.id_pattern)."""
    ids = id_pattern(labelled_subjects(d))
    return ids if labelled else f"(?!{ids}(?!{ID})){ID}+"


def subject_outputs(d, labelled):
    """sequence_outputs, + per sequence in slices_written its slices (slices_<sequence>), + the
    label for labelled subjects, the subject wildcard kept."""
    radius = STUDY.preprocess.slices2d.hf_radius
    out = sequence_outputs(d)
    for q in slices_written()[(d.name, labelled)]:
        out[f"slices_{q}"] = at(SLICES, dataset=d.name, sequence=q, radius=radius)
    return {**out, "label": at(LABEL, dataset=d.name)} if labelled else out


def preprocess_outputs(d, labelled):
    """The named outputs of a subject's preprocessing in dataset `d` (the subject wildcard kept):
    the check's report, the brain masks and skull-strip QC, subject_outputs, the subject's QC."""
    return {"checked": at(INPUTS_CHECKED, dataset=d.name), "mask": at(NATIVE_BRAIN, dataset=d.name),
            "grid": at(BRAIN, dataset=d.name), "qc": at(QC_SKULLSTRIP, dataset=d.name),
            "qc_png": at(QC_SUBJECT_PNG, dataset=d.name), "qc_json": at(QC_SUBJECT_JSON, dataset=d.name),
            **subject_outputs(d, labelled)}


def in_report(d, named):
    """`named` outputs with the two QC pictures (qc, qc_png) marked for the HTML report."""
    return {**named,
            "qc": report(named["qc"], caption="../report/captions/qc_skullstrip.rst", category="Quality control",
                         subcategory=f"skull-strip {d.name}"),
            "qc_png": report(named["qc_png"], caption="../report/captions/qc_subject.rst", category="Quality control",
                             subcategory=d.name)}


def preprocess_runtime(d, labelled):
    """Minutes: the sum of the merged stages' (check 5, brain mask 15, 10 per sequence, label
    10, 10 per slices file, QC 10)."""
    return 30 + 10 * (len(d.sequences) + labelled + len(slices_written()[(d.name, labelled)]))


def slice_settings():
    """Param of the preprocessing rules: itermask.preprocess.preprocess_subject.SliceParams' fields but the role."""
    s = STUDY.preprocess.slices2d
    return {"size": s.size, "field_of_view_mm": s.field_of_view_mm,
            "train_range_fraction": list(s.train_range_fraction), "hf_radius": s.hf_radius}


def subject_slice_role(dataset):
    """Param of the preprocessing rules: the subject's slices2d role."""

    def role(wildcards):
        return split_role(STUDY.datasets[dataset].split_of(wildcards.subject))

    return signed(role)


def preprocess_settings(d):
    """Param of preprocess_subject__<dataset>: itermask.preprocess.preprocess_subject.PreprocessParams'
    fields but the device (resolved in the job)."""
    p = STUDY.preprocess
    return {"mask_method": d.mask_method, "mask_sequence": d.mask_sequence, "spacing_mm": p.spacing_mm,
            "box": list(p.box), "zscore_repeats": p.zscore_repeats, "zscore_clip_sd": p.zscore_clip_sd,
            "background": p.background, "hf_radius": p.hf_radius}


@signed
def label_of(wildcards):
    """The subject's resampled label, when it has one ([] otherwise)."""
    has = dataset_of(wildcards).label(wildcards.subject) is not None
    return [path(LABEL, dataset=wildcards.dataset, subject=wildcards.subject)] if has else []


@signed
def slice_role(wildcards):
    """The subject's slices2d role (itermask.config.preprocess_plan.SLICE_ROLES), param of rule slices2d."""
    return split_role(dataset_of(wildcards).split_of(wildcards.subject))


@signed
def radius_of(wildcards):
    """The {radius} wildcard as a number (param of the HF and slice rules)."""
    return int(wildcards.radius)


# -- multi-subject preprocessing jobs (resources.preprocess_subjects_per_job > 1, or 0 = all) ---
def preprocess_chunks(per_job):
    """(dataset, chunk index, subjects) of the multi-subject preprocessing jobs: each dataset's
    subjects in their split order, in groups of `per_job` (0: all of them)."""
    return [(d, k, chunk) for d in STUDY.datasets.values() for k, chunk in chunks_of(d.subjects, per_job)]


def chunk_subject_outputs(d, subject):
    """`preprocess_outputs` of one subject, its wildcard filled."""
    named = preprocess_outputs(d, subject in labelled_subjects(d))
    return {key: at(p, subject=subject) for key, p in named.items()}


def chunk_preprocess_inputs(d, subjects):
    """Input function of a multi-subject preprocessing job: the raw files of its subjects that are there."""
    per_subject = preprocess_inputs(d.name)

    def inputs(wildcards):
        files = (per_subject(SimpleNamespace(subject=s)) for s in subjects)
        return list(dict.fromkeys(f for p in files for f in p.values()))

    return signed(inputs)


def chunk_missing_raw_files(d, subjects):
    """Param of a multi-subject preprocessing job: its subjects' raw files missing now (missing_raw_files')."""
    per_subject = missing_raw_files(d.name)

    def missing(wildcards):
        return sorted(f for s in subjects for f in per_subject(SimpleNamespace(subject=s)))

    return signed(missing)


def chunk_subjects(d, subjects):
    """Param of a multi-subject preprocessing job: per subject its raw files, named outputs and
    slices2d role (workflow_scripts/preprocess_chunk.py)."""
    return [{"subject": s, "raw": subject_raw_files(d.name, s), "outputs": chunk_subject_outputs(d, s),
             "slice_role": split_role(d.split_of(s))} for s in subjects]


def chunk_priority(d, subjects):
    """1 for a chunk with training or validation subjects (training, the longest chain, waits for
    them; training has priority 1 too), else 0: the greedy scheduler would otherwise order the
    chunks by the size of their inputs."""
    return int(any(d.split_of(s) in ("train", "val") for s in subjects))
