# IterMask2 / IterMask3D: unsupervised anomaly detection and segmentation in brain MRI.
# Default config = the embedded demo (config.yaml); the papers: --configfile paper.yaml
from snakemake.utils import min_version

min_version("9.0")


if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/preprocess.smk"
include: "rules/artefacts.smk"
include: "rules/train.smk"
include: "rules/infer.smk"
include: "rules/evaluate.smk"
include: "rules/failed_skullstrip.smk"


# Light aggregation rules run where Snakemake runs (a cluster job would cost more than they do).
localrules:
    all,
    qc_table,
    fixed_tau,
    table,
    figures,
    sensitivity,


rule all:
    input:
        all_targets(),
    default_target: True
