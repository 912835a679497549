# Training one model per experiment that owns a model (METHOD.md §4-5). The method's
# InputSpec (itermask.methods) says which preprocessed files each training/validation
# subject gives. Checkpoints go to CHECKPOINTS/<config hash>/ (not a Snakemake output; inside
# the results folder), so a killed or timed-out job resumes.

include: "inputs/train.smk"


# The experiment's training and validation items in one file, the training job's one input
# (itermask.training.items: why one file plans faster).
rule training_items:
    input:
        train_inputs,
    output:
        TRAIN_ITEMS,
    params:
        train=lambda w: train_items(w.experiment, "train"),
        val=lambda w: train_items(w.experiment, "val"),
    log:
        f"{R}/logs/training_items/{{experiment}}.log",
    localrule: True
    priority: 1  # as rule train: the training chain goes ahead of other ready jobs
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=2,
    script:
        "../workflow_scripts/training_items.py"


rule train:
    input:
        items_file=TRAIN_ITEMS,
        files=lambda w: STUDY.method_files(w.experiment, "train"),  # e.g. AutoDDPM's LPIPS module
    output:
        model=MODEL,
        loss=LOSS_TSV,
        png=report(
            LOSS_PNG,
            caption="../report/captions/loss.rst",
            category="Training",
        ),
    params:
        settings=lambda w: STUDY.training_settings(w.experiment).to_dict(),  # a change elsewhere does not retrain
        checkpoint_dir=lambda w: path(CHECKPOINTS, experiment=w.experiment),
        channels_last=RES.channels_last,
    log:
        f"{R}/logs/train/{{experiment}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{experiment}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: RES.threads
    # Ahead of other ready jobs: Snakemake's greedy scheduler otherwise prefers the jobs with the
    # largest inputs (inference, preprocessing), so a long training and its inference ran last,
    # alone on one core, at the end of the demo.
    priority: 1
    resources:
        mem_mb=RES.train_mem_mb,
        runtime=RES.train_runtime,
        gpu=STUDY.torch_gpus,
    script:
        "../workflow_scripts/train.py"
