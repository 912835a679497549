# Real-artefact sets (issue 4). Failed skull-stripping: per subject, the Dice between the
# dataset's brain mask (rule brain_mask: deepbet) and an MNI-template registration mask
# (antspyx); the subjects with the lowest Dice are flagged. Enabled per dataset in config.


rule failed_skullstrip_set:
    input:
        unpack(failed_skullstrip_inputs),
    output:
        report(
            f"{R}/qc/{{dataset}}_failed_skullstrip.tsv",
            caption="../report/captions/failed_skullstrip.rst",
            category="Quality control",
        ),
    params:
        subjects=lambda w: list(ds(w).subjects),
        n_subjects=lambda w: failed_skullstrip_settings(w.dataset).get("n_subjects", 10),
        spacing_mm=3.0,
    log:
        f"{R}/logs/failed_skullstrip_set/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/failed_skullstrip_set/{{dataset}}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1  # one ITK thread: the registrations are then reproducible bit for bit
    resources:
        mem_mb=4000,
        runtime=lambda w: 10 + len(ds(w).subjects),
    script:
        "../workflow_scripts/failed_skullstrip.py"
