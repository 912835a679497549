# Snakemake's own planning cost (benchmarks/dag_scale.py --bare): the job graph that the pipeline
# plans for dag_scale.py's config (one dataset, two sequences; itermask3d on FLAIR detect +
# segment with two artefact types, itermask2 on FLAIR segment), the same jobs per rule, built
# from bare rules: static input patterns, `shell: touch`, no params, log, conda, script, group
# or resources. What a dry-run of it costs per job, no change to the pipeline's code removes.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir).parent))
from itermask.config.preprocess_plan import id_pattern  # noqa: E402

DS = config["datasets"]["big"]
SPLITS = {k: Path(v).read_text().split() for k, v in DS["splits"].items()}
TRAIN, VAL = SPLITS["train"], SPLITS["val"]
HEALTHY, LESION = SPLITS["test_healthy"], SPLITS["test_lesion"]
ALL = TRAIN + VAL + HEALTHY + LESION
ARTEFACTS = config["artefacts"]["types"]
RAW = DS["pattern"].replace("{sequence}", "{seq}")
LABEL_RAW = DS["label_pattern"]
P = "results/preproc/big/sub-{subject}"
RUNS = {"im3d": VAL + HEALTHY + LESION, "im2": VAL + LESION}


wildcard_constraints:
    subject="[A-Za-z0-9]+",
    seq="[A-Za-z0-9]+",
    exp="[a-z0-9]+",


rule all:
    input:
        "results/qc/big_qc.tsv",
        expand("results/metrics/{exp}/segmentation.tsv", exp=RUNS),
        expand("results/figures/{exp}", exp=RUNS),


LABELLED = id_pattern(LESION)  # the subjects with a label, as the pipeline tells them apart


rule preprocess_subject:
    input:
        expand(RAW, seq=DS["sequences"], allow_missing=True),
    output:
        P + "/inputs_checked.json",
        P + "/native_brainmask.nii.gz",
        P + "/brainmask.nii.gz",
        "results/qc/big/sub-{subject}_skullstrip.png",
        "results/qc/big/sub-{subject}.json",
        expand(P + "/{seq}.nii.gz", seq=DS["sequences"], allow_missing=True),
        expand(P + "/{seq}_hf-r15.nii.gz", seq=DS["sequences"], allow_missing=True),
        P + "/FLAIR_slices2d-r15.npz",
    wildcard_constraints:
        subject=f"(?!{LABELLED}(?![A-Za-z0-9]))[A-Za-z0-9]+",
    shell:
        "touch {output}"


rule preprocess_labelled:
    input:
        expand(RAW, seq=DS["sequences"], allow_missing=True),
        LABEL_RAW,
    output:
        P + "/inputs_checked.json",
        P + "/native_brainmask.nii.gz",
        P + "/brainmask.nii.gz",
        "results/qc/big/sub-{subject}_skullstrip.png",
        "results/qc/big/sub-{subject}.json",
        expand(P + "/{seq}.nii.gz", seq=DS["sequences"], allow_missing=True),
        expand(P + "/{seq}_hf-r15.nii.gz", seq=DS["sequences"], allow_missing=True),
        P + "/FLAIR_slices2d-r15.npz",
        P + "/label.nii.gz",
    wildcard_constraints:
        subject=LABELLED,
    shell:
        "touch {output}"


rule qc_table:
    input:
        expand("results/qc/big/sub-{subject}.json", subject=ALL),
    output:
        "results/qc/big_qc.tsv",
    shell:
        "touch {output}"


rule artefacts:
    input:
        P + "/FLAIR.nii.gz",
        P + "/brainmask.nii.gz",
    output:
        expand("results/artefacts/big/FLAIR/sub-{{subject}}/{a}/image.nii.gz", a=ARTEFACTS),
    shell:
        "touch {output}"


rule training_items:
    input:
        lambda w: expand(P + ("/FLAIR_hf-r15.nii.gz" if w.exp == "im3d" else "/FLAIR_slices2d-r15.npz"), subject=TRAIN + VAL),
    output:
        "results/models/{exp}/items.json",
    shell:
        "touch {output}"


rule train:
    input:
        "results/models/{exp}/items.json",
    output:
        "results/models/{exp}/model.pt",
    shell:
        "touch {output}"


def infer_files(w):
    p = P.format(subject=w.subject)
    if w.exp == "im2":
        return [f"{p}/FLAIR_slices2d-r15.npz"]
    files = [f"{p}/FLAIR_hf-r15.nii.gz"]
    if w.subject in HEALTHY:
        files += [f"results/artefacts/big/FLAIR/sub-{w.subject}/{a}/image.nii.gz" for a in ARTEFACTS]
    return files + ([f"{p}/label.nii.gz"] if w.subject in LESION else [])


rule infer:
    input:
        infer_files,
        "results/models/{exp}/model.pt",
    output:
        directory("results/inference/{exp}/big/sub-{subject}"),
    shell:
        "mkdir -p {output}"


rule evaluate:
    input:
        lambda w: expand("results/inference/{exp}/big/sub-{subject}", exp=w.exp, subject=RUNS[w.exp]),
    output:
        "results/metrics/{exp}/segmentation.tsv",
    shell:
        "touch {output}"


rule figures:
    input:
        lambda w: expand("results/inference/{exp}/big/sub-{subject}", exp=w.exp, subject=RUNS[w.exp]),
        "results/metrics/{exp}/segmentation.tsv",
    output:
        directory("results/figures/{exp}"),
    shell:
        "mkdir -p {output}"
