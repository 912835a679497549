# Per-subject preprocessing (METHOD.md §1): input check -> brain mask (+ its resampled, cropped copy, which
# defines the subject's grid) -> per sequence: resampling onto that grid + iterative z-score +
# high-frequency image at preprocess.hf_radius -> 2D slices, QC. One cluster job per subject
# (group). Stages that would each pay a process start and an antspyx import for a second of
# work share a job. HF images at any other radius (experiments' hf_radius, sweeps) come from
# rule high_frequency.

include: "inputs/preprocess.smk"


# First job of each subject: headers of every raw file (exists, 3D, affine without shear,
# label and mask on their image's grid). Missing files are this job's error, not the DAG's.
rule check_inputs:
    input:
        unpack(check_inputs_inputs),
    output:
        INPUTS_CHECKED,
    params:
        images=lambda w: raw_files(w)["images"],
        label=lambda w: raw_files(w)["label"],
        mask=lambda w: raw_files(w)["mask"],
        mask_sequence=lambda w: dataset_of(w).mask_sequence,
        missing=missing_raw_files,
    log:
        f"{R}/logs/check_inputs/{{dataset}}_{{subject}}.log",
    group:
        cluster_group("subject")
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/check_inputs.py"


rule brain_mask:
    input:
        unpack(brain_mask_inputs),
    output:
        mask=NATIVE_BRAIN,
        grid=BRAIN,
        qc=report(
            QC_SKULLSTRIP,
            caption="../report/captions/qc_skullstrip.rst",
            category="Quality control",
            subcategory="skull-strip {dataset}",
        ),
    params:
        method=lambda w: dataset_of(w).mask_method,
        device=STUDY.device,
        spacing=STUDY.preprocess.spacing_mm,
        box=list(STUDY.preprocess.box),
    log:
        f"{R}/logs/brain_mask/{{dataset}}_{{subject}}.log",
    benchmark:
        f"{R}/benchmarks/brain_mask/{{dataset}}_{{subject}}.tsv"
    group:
        cluster_group("subject")
    conda:
        "../envs/preprocess.yaml"
    threads: RES.threads
    resources:
        mem_mb=3000,
        runtime=15,
    script:
        "../workflow_scripts/brain_mask.py"


rule resample_label:
    input:
        unpack(resample_label_inputs),
        grid=BRAIN,
    output:
        LABEL,
    log:
        f"{R}/logs/resample_label/{{dataset}}_{{subject}}.log",
    group:
        cluster_group("subject")
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/resample_label.py"


rule normalise:
    input:
        unpack(normalise_inputs),
        grid=BRAIN,
    output:
        image=IMAGE,
        hf=at(HF, radius=STUDY.preprocess.hf_radius),
    params:
        radius=STUDY.preprocess.hf_radius,
        zscore_repeats=STUDY.preprocess.zscore_repeats,
        zscore_clip_sd=STUDY.preprocess.zscore_clip_sd,
        background=STUDY.preprocess.background,
    log:
        f"{R}/logs/normalise/{{dataset}}_{{subject}}_{{sequence}}.log",
    group:
        cluster_group("subject")
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/normalise.py"


# The HF image at a radius other than preprocess.hf_radius (normalise writes that one).
ruleorder: normalise > high_frequency


rule high_frequency:
    input:
        image=IMAGE,
    output:
        HF,
    wildcard_constraints:
        radius=OTHER_RADIUS,
    params:
        radius=lambda w: int(w.radius),
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


rule slices2d:
    input:
        image=IMAGE,
        brain=BRAIN,
        label=label_of,
    output:
        SLICES,
    params:
        role=slice_role,
        radius=lambda w: int(w.radius),
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


rule qc_subject:
    input:
        images=lambda w: [path(IMAGE, dataset=w.dataset, subject=w.subject, sequence=q) for q in dataset_of(w).sequences],
        brain=BRAIN,
        label=label_of,
    output:
        png=report(
            QC_SUBJECT_PNG,
            caption="../report/captions/qc_subject.rst",
            category="Quality control",
            subcategory="{dataset}",
        ),
        json=QC_SUBJECT_JSON,
    params:
        sequences=lambda w: list(dataset_of(w).sequences),
    log:
        f"{R}/logs/qc_subject/{{dataset}}_{{subject}}.log",
    group:
        cluster_group("subject")
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/qc_subject.py"


rule qc_table:
    input:
        lambda w: [path(QC_SUBJECT_JSON, dataset=w.dataset, subject=s) for s in dataset_of(w).subjects],
    output:
        report(
            QC_TABLE,
            caption="../report/captions/qc_table.rst",
            category="Quality control",
        ),
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
