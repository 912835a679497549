# Per-subject iterative inference (METHOD.md §6): all conditions of one subject (clean,
# artefacts, severity levels) advance in lockstep on the device. Each condition's files
# come from the method's InputSpec for that condition.

include: "inputs/infer.smk"


rule infer:
    input:
        unpack(infer_inputs),
    output:
        directory(INFERENCE),
    params:
        settings=lambda w: STUDY.settings(w.experiment).to_dict(),
        conditions=infer_conditions,
        dataset=lambda w: w.dataset,
        subject=lambda w: w.subject,
        field_of_view_mm=STUDY.preprocess.slices2d.field_of_view_mm,
    log:
        f"{R}/logs/infer/{{experiment}}_{{dataset}}_{{subject}}.log",
    benchmark:
        f"{R}/benchmarks/infer/{{experiment}}_{{dataset}}_{{subject}}.tsv"
    group:
        cluster_group("inference")
    conda:
        "../envs/torch.yaml"
    threads: RES.threads
    resources:
        mem_mb=RES.infer_mem_mb,
        runtime=RES.infer_runtime,
        gpu=RES.gpu,
    script:
        "../workflow_scripts/infer.py"
