# Per-subject iterative inference (METHOD.md §6): all conditions of one subject (clean,
# artefacts, severity levels) advance in lockstep on the device.


rule fixed_tau:
    input:
        fixed_tau_dirs,
    output:
        f"{R}/models/{{experiment}}/fixed_tau.json",
    log:
        f"{R}/logs/fixed_tau/{{experiment}}.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/fixed_tau.py"


rule infer:
    input:
        unpack(infer_inputs),
    output:
        directory(f"{R}/inference/{{experiment}}/{{dataset}}/sub-{{subject}}"),
    params:
        conditions=infer_conditions,
        settings=infer_settings,
        seed=SEED,
    log:
        f"{R}/logs/infer/{{experiment}}_{{dataset}}_{{subject}}.log",
    benchmark:
        f"{R}/benchmarks/infer/{{experiment}}_{{dataset}}_{{subject}}.tsv"
    group:
        infer_group
    conda:
        "../envs/torch.yaml"
    threads: RES["threads"]
    resources:
        mem_mb=RES["infer_mem_mb"],
        runtime=RES["infer_runtime"],
        gpu=RES["gpu"],
    script:
        "../workflow_scripts/infer.py"
