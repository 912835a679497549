# Real-artefact sets (issue 4). Failed skull-stripping: per subject, the Dice between the
# dataset's brain mask (rule brain_mask: deepbet) and an MNI-template registration mask
# (antspyx); the subjects with the lowest Dice are flagged. Enabled per dataset with
# `failed_skullstrip_set: {enabled: true, n_subjects: N}`.

include: "inputs/failed_skullstrip.smk"


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
        subjects=lambda w: list(STUDY.datasets[w.dataset].subjects),
        n_subjects=lambda w: STUDY.failed_skullstrip(w.dataset).n_subjects,
        spacing_mm=3.0,  # the template registration's working resolution (not a setting)
    log:
        f"{R}/logs/failed_skullstrip/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/failed_skullstrip/{{dataset}}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1  # one ITK thread: the registrations are then reproducible bit for bit
    resources:
        mem_mb=4000,
        runtime=lambda w: 10 + len(STUDY.datasets[w.dataset].subjects),
    script:
        "../workflow_scripts/failed_skullstrip.py"
