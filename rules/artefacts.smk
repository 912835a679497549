# Synthetic anomalies for detection (METHOD.md §2), applied to preprocessed healthy test
# volumes; every draw is seeded and recorded in a sidecar JSON. One job per subject writes
# all artefact types and severity levels, each with its HF image at preprocess.hf_radius;
# rule artefact_high_frequency makes the HF image at any other radius.

include: "inputs/artefacts.smk"


rule artefacts:
    input:
        unpack(artefacts_inputs),
    output:
        image=expand(ART_IMAGE, artefact=ARTEFACTS, allow_missing=True),
        hf=expand(at(ART_HF, radius=STUDY.preprocess.hf_radius), artefact=ARTEFACTS, allow_missing=True),
        json=expand(ART_JSON, artefact=ARTEFACTS, allow_missing=True),
    params:
        specs={a: STUDY.artefact_params(a) for a in ARTEFACTS},
        seed=STUDY.seed,
        radius=STUDY.preprocess.hf_radius,
    log:
        f"{R}/logs/artefacts/{{dataset}}_{{sequence}}_{{subject}}.log",
    group:
        cluster_group("artefacts")
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    script:
        "../workflow_scripts/artefacts.py"


ruleorder: artefacts > artefact_high_frequency


rule artefact_high_frequency:
    input:
        image=ART_IMAGE,
    output:
        ART_HF,
    wildcard_constraints:
        radius=OTHER_RADIUS,
    params:
        radius=lambda w: int(w.radius),
    log:
        f"{R}/logs/artefact_high_frequency/{{dataset}}_{{sequence}}_{{subject}}_{{artefact}}_r{{radius}}.log",
    group:
        cluster_group("artefacts")
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/high_frequency.py"
