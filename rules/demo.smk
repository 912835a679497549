# The embedded demo dataset: raw, unstripped, non-RAS heads built from template anatomy
# shipped inside the nilearn and pydeface wheels. Declared in config like any dataset.


rule demo_data:
    output:
        demo_outputs(),
    params:
        dataset=STUDY.demo_dataset,
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
