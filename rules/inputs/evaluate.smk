# Input functions and parameters of the rules in rules/evaluate.smk.


def table_inputs(wildcards):
    spec = STUDY.tables[wildcards.name]
    return {e: [path(METRICS, experiment=e, kind=kind) for kind in ("segmentation", "detection")]
            for e in spec["experiments"]}


def sensitivity_inputs(wildcards):
    members = STUDY.sweep_members(wildcards.experiment, wildcards.param)
    return {e: path(METRICS, experiment=e, kind="segmentation") for e in members}
