# Metrics per experiment, the papers' tables and figures (METHOD.md §7-9).


rule evaluate:
    input:
        lambda w: inference_dirs(w.experiment),
    output:
        segmentation=f"{R}/metrics/{{experiment}}/segmentation.tsv",
        detection=f"{R}/metrics/{{experiment}}/detection.tsv",
        scores=f"{R}/metrics/{{experiment}}/scores.tsv",
    params:
        evaluation=config.get("evaluation", {}),
    log:
        f"{R}/logs/evaluate/{{experiment}}.log",
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
        segmentation=f"{R}/metrics/{{experiment}}/segmentation.tsv",
        scores=f"{R}/metrics/{{experiment}}/scores.tsv",
    output:
        report(
            directory(f"{R}/figures/{{experiment}}"),
            patterns=["{name}.png"],
            caption="../report/captions/figures.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
    log:
        f"{R}/logs/figures/{{experiment}}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow_scripts/figures.py"


rule table:
    input:
        lambda w: expand(
            f"{R}/metrics/{{experiment}}/{{kind}}.tsv",
            experiment=table_spec(w.name)["experiments"],
            kind=["segmentation", "detection"],
        ),
    output:
        md=f"{R}/tables/{{name}}.md",
        csv=report(
            f"{R}/tables/{{name}}.csv",
            caption="../report/captions/table.rst",
            category="Tables",
        ),
        tex=f"{R}/tables/{{name}}.tex",
    params:
        spec=lambda w: table_spec(w.name),
        metrics_dir=f"{R}/metrics",
    log:
        f"{R}/logs/table/{{name}}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/table.py"


rule sensitivity:
    input:
        unpack(sensitivity_inputs),
    output:
        report(
            f"{R}/figures/sensitivity/{{experiment}}_{{param}}.png",
            caption="../report/captions/sensitivity.rst",
            category="Figures",
            subcategory="sensitivity",
        ),
    params:
        values=lambda w: STUDY.sweep_members(w.experiment, w.param),
        protocols=config.get("evaluation", {}).get("protocols", ["honest"]),
    log:
        f"{R}/logs/sensitivity/{{experiment}}_{{param}}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/sensitivity.py"
