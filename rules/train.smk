# Training one model per experiment that owns a model (METHOD.md §4-5). The method's
# InputSpec (itermask.methods) says which preprocessed files each training/validation
# subject gives. Checkpoints go to R/checkpoints/{experiment}/<config hash>/ (not a Snakemake
# output; inside the results folder), so a killed or timed-out job resumes.

include: "inputs/train.smk"


rule train:
    input:
        train_inputs,
    output:
        model=MODEL,
        loss=LOSS_TSV,
        png=report(
            LOSS_PNG,
            caption="../report/captions/loss.rst",
            category="Training",
        ),
    params:
        settings=lambda w: STUDY.settings(w.experiment).to_dict(),
        train=lambda w: train_items(w.experiment, "train"),
        val=lambda w: train_items(w.experiment, "val"),
        checkpoint_dir=lambda w: f"{R}/checkpoints/{w.experiment}",
        channels_last=RES.channels_last,
    log:
        f"{R}/logs/train/{{experiment}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{experiment}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: RES.threads
    resources:
        mem_mb=RES.train_mem_mb,
        runtime=RES.train_runtime,
        gpu=RES.gpu,
    script:
        "../workflow_scripts/train.py"
