# Per-subject preprocessing (METHOD.md §1): brain mask -> resampling/cropping -> iterative
# z-score + high-frequency image -> 2D slices, QC. One cluster job per subject (group).


rule brain_mask:
    input:
        unpack(raw_mask_source),
    output:
        PRE + "/native_brainmask.nii.gz",
    params:
        method=lambda w: ds(w).mask_method,
        device=DEVICE,
    log:
        R + "/logs/brain_mask/{dataset}_{subject}.log",
    benchmark:
        R + "/benchmarks/brain_mask/{dataset}_{subject}.tsv"
    group:
        "subject"
    conda:
        "../envs/preprocess.yaml"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=15,
    script:
        "../workflow_scripts/brain_mask.py"


rule resample_mask:
    input:
        PRE + "/native_brainmask.nii.gz",
    output:
        PRE + "/brainmask.nii.gz",
    params:
        spacing=config["preprocess"]["spacing_mm"],
        box=config["preprocess"]["box"],
    log:
        R + "/logs/resample_mask/{dataset}_{subject}.log",
    group:
        "subject"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/resample_mask.py"


rule resample_image:
    input:
        image=raw_image,
        grid=PRE + "/brainmask.nii.gz",
    output:
        temp(PRE + "/{sequence}_resampled.nii.gz"),
    log:
        R + "/logs/resample_image/{dataset}_{subject}_{sequence}.log",
    group:
        "subject"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/resample_image.py"


rule resample_label:
    input:
        unpack(raw_label),
        grid=PRE + "/brainmask.nii.gz",
    output:
        PRE + "/label.nii.gz",
    log:
        R + "/logs/resample_label/{dataset}_{subject}.log",
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
        image=PRE + "/{sequence}_resampled.nii.gz",
        brain=PRE + "/brainmask.nii.gz",
    output:
        image=PRE + "/{sequence}.nii.gz",
        hf=PRE + "/{sequence}_hf.nii.gz",
    params:
        pre=config["preprocess"],
    log:
        R + "/logs/normalise/{dataset}_{subject}_{sequence}.log",
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
        image=PRE + "/{sequence}.nii.gz",
        brain=PRE + "/brainmask.nii.gz",
        label=lambda w: label_of(w.dataset, w.subject),
    output:
        PRE + "/{sequence}_slices2d.npz",
    params:
        role=slice_role,
        cfg=config["preprocess"].get("slices2d", {}),
    log:
        R + "/logs/slices2d/{dataset}_{subject}_{sequence}.log",
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
        brain=PRE + "/brainmask.nii.gz",
        label=lambda w: label_of(w.dataset, w.subject),
    output:
        png=report(
            R + "/qc/{dataset}/sub-{subject}.png",
            caption="../report/captions/qc_subject.rst",
            category="Quality control",
            subcategory="{dataset}",
        ),
        json=R + "/qc/{dataset}/sub-{subject}.json",
    params:
        sequences=lambda w: list(ds(w).sequences),
    log:
        R + "/logs/qc_subject/{dataset}_{subject}.log",
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
        lambda w: expand(R + "/qc/{{dataset}}/sub-{subject}.json", subject=ds(w).subjects),
    output:
        report(
            R + "/qc/{dataset}_qc.tsv",
            caption="../report/captions/qc_table.rst",
            category="Quality control",
        ),
    log:
        R + "/logs/qc_table/{dataset}.log",
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/qc_table.py"
