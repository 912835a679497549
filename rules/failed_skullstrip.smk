# The failed-skull-stripping set (IterMask3D Table 2, real artefacts), enabled per dataset with
# `failed_skullstrip_set: {enabled: true, n_subjects: N}`. Per candidate (a test_healthy
# subject): HD-BET and template-registration masks beside deepbet's (preprocess_subject), their
# pairwise Dice and the outlying mask. Per dataset: the TSV record, selecting the N candidates
# with the lowest mean agreement. The candidates' scans with their outlying masks form the
# derived dataset <dataset>failedstrip, preprocessed by the rules of preprocess.smk (brain
# mask method `pattern`); selected subjects get inference condition `failed_skullstrip`.

include: "inputs/failed_skullstrip.smk"


rule failed_skullstrip_masks:
    input:
        unpack(failed_skullstrip_masks_inputs),
    output:
        hd_bet=at(FS_TOOL_MASK, tool="hd_bet"),
        template=at(FS_TOOL_MASK, tool="template"),
        outlier=FS_OUTLIER,
        agreement=FS_AGREEMENT,
    params:
        settings=failed_skullstrip_masks_settings,
        device=STUDY.skullstrip_device,
    log:
        f"{R}/logs/failed_skullstrip_masks/{{dataset}}_{{subject}}.log",
    benchmark:
        f"{R}/benchmarks/failed_skullstrip_masks/{{dataset}}_{{subject}}.tsv"
    group:
        cluster_group("subject")
    conda:
        "../envs/preprocess.yaml"
    threads: RES.threads  # HD-BET (torch); the registration pins ITK to one thread (template_mask.pin_itk_threads)
    resources:
        mem_mb=6000,
        runtime=30,
        gpu=STUDY.skullstrip_gpus,
    script:
        "../workflow_scripts/failed_skullstrip_masks.py"


rule failed_skullstrip:
    input:
        unpack(failed_skullstrip_inputs),
    output:
        report(
            FAILED_SKULLSTRIP,
            caption="../report/captions/failed_skullstrip.rst",
            category="Quality control",
        ),
    params:
        subjects=lambda w: list(STUDY.failed_strip_candidates(w.dataset)),
        n_subjects=lambda w: STUDY.failed_skullstrip(w.dataset).n_subjects,
    log:
        f"{R}/logs/failed_skullstrip/{{dataset}}.log",
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/failed_skullstrip.py"
