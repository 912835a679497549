# Per-subject preprocessing (METHOD.md §1): brain mask (+ its resampled, cropped copy, which
# defines the subject's grid) -> per sequence: resampling onto that grid + iterative z-score +
# high-frequency image -> 2D slices, QC. One cluster job per subject (group). Stages that
# would each pay a process start and an antspyx import for a second of work share a job.


rule brain_mask:
    input:
        unpack(raw_mask_source),
    output:
        mask=f"{PRE}/native_brainmask.nii.gz",
        grid=f"{PRE}/brainmask.nii.gz",
        qc=report(
            f"{R}/qc/{{dataset}}/sub-{{subject}}_skullstrip.png",
            caption="../report/captions/qc_skullstrip.rst",
            category="Quality control",
            subcategory="skull-strip {dataset}",
        ),
    params:
        method=lambda w: ds(w).mask_method,
        device=DEVICE,
        spacing=config["preprocess"]["spacing_mm"],
        box=config["preprocess"]["box"],
    log:
        f"{R}/logs/brain_mask/{{dataset}}_{{subject}}.log",
    benchmark:
        f"{R}/benchmarks/brain_mask/{{dataset}}_{{subject}}.tsv"
    group:
        "subject"
    conda:
        "../envs/preprocess.yaml"
    threads: RES["threads"]
    resources:
        mem_mb=3000,
        runtime=15,
    script:
        "../workflow_scripts/brain_mask.py"


rule resample_label:
    input:
        unpack(raw_label),
        grid=f"{PRE}/brainmask.nii.gz",
    output:
        f"{PRE}/label.nii.gz",
    log:
        f"{R}/logs/resample_label/{{dataset}}_{{subject}}.log",
    group:
        "subject"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/resample_label.py"


rule normalise:
    input:
        image=raw_image,
        grid=f"{PRE}/brainmask.nii.gz",
    output:
        image=f"{PRE}/{{sequence}}.nii.gz",
        hf=f"{PRE}/{{sequence}}_hf.nii.gz",
    params:
        pre=config["preprocess"],
    log:
        f"{R}/logs/normalise/{{dataset}}_{{subject}}_{{sequence}}.log",
    group:
        "subject"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/normalise.py"


rule slices2d:
    input:
        image=f"{PRE}/{{sequence}}.nii.gz",
        brain=f"{PRE}/brainmask.nii.gz",
        label=lambda w: label_of(w.dataset, w.subject),
    output:
        f"{PRE}/{{sequence}}_slices2d.npz",
    params:
        role=slice_role,
        cfg=config["preprocess"].get("slices2d", {}),
    log:
        f"{R}/logs/slices2d/{{dataset}}_{{subject}}_{{sequence}}.log",
    group:
        "subject"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/slices2d.py"


rule qc_subject:
    input:
        images=lambda w: [preprocessed(w.dataset, w.subject, q)["image"] for q in ds(w).sequences],
        brain=f"{PRE}/brainmask.nii.gz",
        label=lambda w: label_of(w.dataset, w.subject),
    output:
        png=report(
            f"{R}/qc/{{dataset}}/sub-{{subject}}.png",
            caption="../report/captions/qc_subject.rst",
            category="Quality control",
            subcategory="{dataset}",
        ),
        json=f"{R}/qc/{{dataset}}/sub-{{subject}}.json",
    params:
        sequences=lambda w: list(ds(w).sequences),
    log:
        f"{R}/logs/qc_subject/{{dataset}}_{{subject}}.log",
    group:
        "subject"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/qc_subject.py"


rule qc_table:
    input:
        lambda w: expand(f"{R}/qc/{w.dataset}/sub-{{subject}}.json", subject=ds(w).subjects),
    output:
        report(
            f"{R}/qc/{{dataset}}_qc.tsv",
            caption="../report/captions/qc_table.rst",
            category="Quality control",
        ),
    log:
        f"{R}/logs/qc_table/{{dataset}}.log",
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/qc_table.py"
