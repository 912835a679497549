# Input functions and parameters of the rules in rules/failed_skullstrip.smk.


def failed_skullstrip_masks_inputs(wildcards):
    """Raw image of the stripped sequence and deepbet's native brain mask of one candidate. A
    missing raw image is left out (`present`): the subject's preprocess_subject job fails on it,
    naming it, and this job never runs, instead of the whole DAG failing to build."""
    d = STUDY.datasets[wildcards.dataset]
    return {
        **present({"image": d.image(wildcards.subject, d.mask_sequence)}),
        "deepbet": path(NATIVE_BRAIN, dataset=d.name, subject=wildcards.subject),
    }


def failed_skullstrip_inputs(wildcards):
    """Every candidate's mask agreement (in the order of the rule's params.subjects)."""
    return {
        "agreements": [path(FS_AGREEMENT, dataset=wildcards.dataset, subject=s)
                       for s in STUDY.failed_strip_candidates(wildcards.dataset)],
    }


def failed_skullstrip_masks_settings(wildcards):
    s = STUDY.failed_skullstrip(wildcards.dataset)
    return {"hd_bet_mode": s.hd_bet_mode, "hd_bet_tta": s.hd_bet_tta, "template_spacing_mm": s.template_spacing_mm}
