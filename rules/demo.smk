# The embedded demo dataset: raw, unstripped, non-RAS heads built from template anatomy
# shipped inside the nilearn and pydeface wheels. Declared in config like any dataset.

include: "inputs/demo.smk"


rule demo_data:
    output:
        demo_outputs(),
        participants=DEMO_FILES.get("participants_tsv", []),
    params:
        splits=DEMO_FILES.get("splits"),
        images=DEMO_FILES.get("images"),
        labels=DEMO_FILES.get("labels"),
        voxel_size_mm=STUDY.demo.voxel_size_mm if STUDY.demo else None,
        lesion_volumes_ml=list(STUDY.demo.lesion_volumes_ml) if STUDY.demo else None,
        seed=STUDY.seed,
    log:
        f"{R}/logs/demo_data.log",
    benchmark:
        f"{R}/benchmarks/demo_data.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../workflow_scripts/demo_data.py"
