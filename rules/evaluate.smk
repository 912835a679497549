# Metrics per experiment, the papers' tables and figures (METHOD.md §7-9).


rule evaluate:
    input:
        lambda w: inference_dirs(w.experiment),
    output:
        segmentation=R + "/metrics/{experiment}/segmentation.tsv",
        detection=R + "/metrics/{experiment}/detection.tsv",
        scores=R + "/metrics/{experiment}/scores.tsv",
    params:
        evaluation=config.get("evaluation", {}),
    log:
        R + "/logs/evaluate/{experiment}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow_scripts/evaluate.py"


rule figures:
    input:
        dirs=lambda w: inference_dirs(w.experiment),
        segmentation=R + "/metrics/{experiment}/segmentation.tsv",
        scores=R + "/metrics/{experiment}/scores.tsv",
    output:
        report(
            directory(R + "/figures/{experiment}"),
            patterns=["{name}.png"],
            caption="../report/captions/figures.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
    log:
        R + "/logs/figures/{experiment}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow_scripts/figures.py"


def table_spec(name):
    for table in config.get("tables", []):
        if table["name"] == name:
            return table
    raise ValueError(f"unknown table '{name}'")


rule table:
    input:
        lambda w: expand(
            R + "/metrics/{experiment}/{kind}.tsv",
            experiment=table_spec(w.name)["experiments"],
            kind=["segmentation", "detection"],
        ),
    output:
        md=R + "/tables/{name}.md",
        csv=report(
            R + "/tables/{name}.csv",
            caption="../report/captions/table.rst",
            category="Tables",
        ),
        tex=R + "/tables/{name}.tex",
    params:
        spec=lambda w: table_spec(w.name),
        metrics_dir=R + "/metrics",
    log:
        R + "/logs/table/{name}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/table.py"
