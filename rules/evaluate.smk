# Metrics per experiment, the papers' tables and figures (METHOD.md §7-9). Dataset and
# subject of each inference folder travel as values (params runs), never parsed from paths.

include: "inputs/evaluate.smk"


rule evaluate:
    input:
        lambda w: [folder for *_, folder in inference_runs(w.experiment)],
    output:
        segmentation=at(METRICS, kind="segmentation"),
        detection=at(METRICS, kind="detection"),
        scores=at(METRICS, kind="scores"),
    params:
        runs=lambda w: inference_runs(w.experiment),
        protocols=list(STUDY.evaluation.protocols),
        honest_source=STUDY.evaluation.honest_source,
        honest_fpr=STUDY.evaluation.honest_fpr,
        size_bins=list(STUDY.evaluation.size_bins),
        pooled_anomalies=[a for a in STUDY.artefact_conditions() if "-s" not in a],
    log:
        f"{R}/logs/evaluate/{{experiment}}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=aggregate_runtime(2),  # loads each lesion subject's maps twice (test-set PSNR/SSIM ranges, then rows)
    script:
        "../workflow_scripts/evaluate.py"


rule figures:
    input:
        dirs=lambda w: [folder for *_, folder in inference_runs(w.experiment)],
        segmentation=at(METRICS, kind="segmentation"),
        scores=at(METRICS, kind="scores"),
    output:
        report(
            directory(FIGURES),
            patterns=["{name}.png"],
            caption="../report/captions/figures.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
    params:
        runs=lambda w: inference_runs(w.experiment),
        severity=STUDY.config["artefacts"]["severity"],  # the severity figure's x axis ('<type>-s<k>')
    log:
        f"{R}/logs/figures/{{experiment}}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=aggregate_runtime(0.5),  # reads each scan's result.json; overlays and curves are capped
    script:
        "../workflow_scripts/figures.py"


rule table:
    input:
        unpack(table_inputs),
    output:
        md=at(TABLE, ext="md"),
        csv=report(
            at(TABLE, ext="csv"),
            caption="../report/captions/table.rst",
            category="Tables",
        ),
        tex=at(TABLE, ext="tex"),
        vs_md=at(TABLE_VS_PUBLISHED, ext="md"),
        vs_csv=at(TABLE_VS_PUBLISHED, ext="csv"),
    params:
        spec=lambda w: STUDY.tables[w.name],
        context=lambda w: caption_context(STUDY.tables[w.name], STUDY),
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
        png=report(
            SENSITIVITY,
            caption="../report/captions/sensitivity.rst",
            category="Figures",
            subcategory="sensitivity",
        ),
        csv=SENSITIVITY_DATA,
    params:
        values=lambda w: STUDY.sweep_members(w.experiment, w.param),
        protocols=list(STUDY.evaluation.protocols),
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
