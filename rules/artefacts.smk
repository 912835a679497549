# Synthetic anomalies for detection (METHOD.md §2), applied to preprocessed healthy test
# volumes; every draw is seeded and recorded in a sidecar JSON. One job per subject writes
# all artefact types and severity levels.

ARTEFACTS = STUDY.artefact_conditions()


rule artefacts:
    input:
        unpack(artefact_inputs),
    output:
        image=expand(f"{ART}/image.nii.gz", artefact=ARTEFACTS, allow_missing=True),
        hf=expand(f"{ART}/hf.nii.gz", artefact=ARTEFACTS, allow_missing=True),
        json=expand(f"{ART}/params.json", artefact=ARTEFACTS, allow_missing=True),
    params:
        specs={a: STUDY.artefact_params(a) for a in ARTEFACTS},
        seed=SEED,
        hf_radius=config["preprocess"].get("hf_radius", 15),
    log:
        f"{R}/logs/artefacts/{{dataset}}_{{sequence}}_{{subject}}.log",
    group:
        "inference"
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    script:
        "../workflow_scripts/artefacts.py"
