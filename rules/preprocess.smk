# Per-subject preprocessing (METHOD.md §1): input check -> brain mask (+ its resampled, cropped copy, which
# defines the subject's grid) -> per sequence: resampling onto that grid + iterative z-score +
# high-frequency image at preprocess.hf_radius -> the label on that grid -> the 2D slices at
# preprocess.slices2d.hf_radius of the sequences slice-input experiments read -> the subject's QC,
# all in ONE job per subject: a job's start and antspyx import cost more than most of its
# stages, and fewer jobs plan faster. One cluster job per subject (group). HF images and slices
# at any other radius (experiments' hf_radius, sweeps) come from rules high_frequency and slices2d.

include: "inputs/preprocess.smk"


# resources.preprocess_subjects_per_job sets how many subjects share a job. 1 (default, clusters):
# per dataset one rule for its subjects without a label (preprocess_subject__<dataset>) and one
# for those with one (preprocess_labelled__<dataset>: + the label), told apart by a subject
# constraint built from the labelled IDs (a rule's outputs are fixed patterns), one job per
# subject. The input check runs first, so a missing or malformed raw file fails this job
# (--keep-going finishes the other subjects) before anything heavy runs. N > 1, or 0 = all (local
# runs, the demo): rules preprocess__<dataset>__<chunk>, one process for N subjects of a dataset
# (the imports and the skull-stripper loaded once: about 5 s of a 10 s job at the demo's size),
# every subject's input check before any skull-stripping; the same files either way. A bad file
# then fails its chunk's subjects together.
_PER_JOB = RES.preprocess_subjects_per_job
for _dataset, _labelled in preprocess_rules() if _PER_JOB == 1 else ():

    rule:
        name:
            f"preprocess_{'labelled' if _labelled else 'subject'}__{_dataset.name}"
        input:
            unpack(preprocess_inputs(_dataset.name)),
        output:
            **in_report(_dataset, preprocess_outputs(_dataset, _labelled)),
        wildcard_constraints:
            subject=subject_constraint(_dataset, _labelled),
        params:
            dataset=_dataset.name,
            raw=raw_files(_dataset.name),
            missing=missing_raw_files(_dataset.name),
            settings=preprocess_settings(_dataset),
            slices=slice_settings(),
            slice_role=subject_slice_role(_dataset.name),
            device=STUDY.skullstrip_device,
        log:
            f"{R}/logs/preprocess_subject/{_dataset.name}_{{subject}}.log",
        benchmark:
            f"{R}/benchmarks/preprocess_subject/{_dataset.name}_{{subject}}.tsv"
        group:
            cluster_group("subject")
        conda:
            "../envs/preprocess.yaml"
        threads: RES.threads
        resources:
            mem_mb=3000,  # the most of the stages it merged (check 1000, brain mask 3000, the others 2000)
            runtime=preprocess_runtime(_dataset, _labelled),
            gpu=STUDY.skullstrip_gpus,
        script:
            "../workflow_scripts/preprocess_subject.py"


for _dataset, _chunk, _subjects in preprocess_chunks(_PER_JOB) if _PER_JOB != 1 else ():

    rule:
        name:
            f"preprocess__{_dataset.name}__{_chunk}"
        input:
            chunk_preprocess_inputs(_dataset, _subjects),
        output:
            [f for s in _subjects for f in in_report(_dataset, chunk_subject_outputs(_dataset, s)).values()],
        params:
            dataset=_dataset.name,
            subjects=chunk_subjects(_dataset, _subjects),
            missing=chunk_missing_raw_files(_dataset, _subjects),
            settings=preprocess_settings(_dataset),
            slices=slice_settings(),
            device=STUDY.skullstrip_device,
        log:
            f"{R}/logs/preprocess_subject/{_dataset.name}_chunk{_chunk}.log",
        benchmark:
            f"{R}/benchmarks/preprocess_subject/{_dataset.name}_chunk{_chunk}.tsv"
        conda:
            "../envs/preprocess.yaml"
        threads: RES.threads
        priority: chunk_priority(_dataset, _subjects)
        resources:
            mem_mb=3000,  # one subject at a time
            runtime=sum(preprocess_runtime(_dataset, s in labelled_subjects(_dataset)) for s in _subjects),
            gpu=STUDY.skullstrip_gpus,
        script:
            "../workflow_scripts/preprocess_chunk.py"


# The HF image at a radius other than preprocess.hf_radius (preprocess_subject writes that one).
rule high_frequency:
    input:
        image=IMAGE,
    output:
        HF,
    wildcard_constraints:
        radius=OTHER_RADIUS,
    params:
        radius=radius_of,
    log:
        f"{R}/logs/high_frequency/{{dataset}}_{{subject}}_{{sequence}}_r{{radius}}.log",
    group:
        cluster_group("subject")
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/high_frequency.py"


# The 2D slices at a radius other than preprocess.slices2d.hf_radius (preprocess_subject writes those).
rule slices2d:
    input:
        image=IMAGE,
        brain=BRAIN,
        label=label_of,
    output:
        SLICES,
    wildcard_constraints:
        radius=OTHER_SLICE_RADIUS,
    params:
        role=slice_role,
        radius=radius_of,
        size=STUDY.preprocess.slices2d.size,
        field_of_view_mm=STUDY.preprocess.slices2d.field_of_view_mm,
        train_range_fraction=list(STUDY.preprocess.slices2d.train_range_fraction),
    log:
        f"{R}/logs/slices2d/{{dataset}}_{{subject}}_{{sequence}}_r{{radius}}.log",
    group:
        cluster_group("subject")
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/slices2d.py"


rule qc_table:
    input:
        lambda w: [path(QC_SUBJECT_JSON, dataset=w.dataset, subject=s) for s in dataset_of(w).subjects],
    output:
        report(
            QC_TABLE,
            caption="../report/captions/qc_table.rst",
            category="Quality control",
        ),
    params:
        subjects=lambda w: list(dataset_of(w).subjects),  # in the order of the input files
    log:
        f"{R}/logs/qc_table/{{dataset}}.log",
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/qc_table.py"
