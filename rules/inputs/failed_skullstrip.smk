# Input functions and parameters of the rules in rules/failed_skullstrip.smk.


def failed_skullstrip_inputs(wildcards):
    """Raw image of the stripped sequence and the native brain mask, per subject (same order)."""
    d = STUDY.datasets[wildcards.dataset]
    return {
        "images": [d.image(s, d.mask_sequence) for s in d.subjects],
        "masks": [path(NATIVE_BRAIN, dataset=d.name, subject=s) for s in d.subjects],
    }
