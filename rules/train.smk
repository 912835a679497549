# Training one model per experiment that owns a model (METHOD.md §4-5). Checkpoints go to
# checkpoints/{experiment}/ (not a Snakemake output), so a killed or timed-out job resumes.


rule train:
    input:
        train_inputs,
    output:
        model=f"{R}/models/{{experiment}}/model.pt",
        loss=f"{R}/models/{{experiment}}/loss.tsv",
        png=report(
            f"{R}/models/{{experiment}}/loss.png",
            caption="../report/captions/loss.rst",
            category="Training",
        ),
    params:
        settings=lambda w: STUDY.experiment(w.experiment),
        train=lambda w: train_items(w.experiment, "train"),
        val=lambda w: train_items(w.experiment, "val"),
        checkpoint_dir=lambda w: f"checkpoints/{w.experiment}",
        seed=SEED,
        # radius of the preprocessed HF inputs; the model's radius is settings["hf_radius"]
        # (experiment-level, default the same): training recomputes HF when they differ
        hf_radius=lambda w: STUDY.stored_hf_radius(w.experiment),
    log:
        f"{R}/logs/train/{{experiment}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{experiment}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: RES["threads"]
    resources:
        mem_mb=RES["train_mem_mb"],
        runtime=RES["train_runtime"],
        gpu=RES["gpu"],
    script:
        "../workflow_scripts/train.py"
