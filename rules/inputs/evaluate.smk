# Input functions and parameters of the rules in rules/evaluate.smk.


from itermask.evaluation.published import published_csv
from itermask.evaluation.spec import row_training, table_experiments


def table_inputs(wildcards):
    spec = STUDY.tables[wildcards.name]
    return {e: [path(METRICS, experiment=e, kind=kind) for kind in ("segmentation", "detection", "scores")]
            for e in table_experiments(spec)}


def table_published(wildcards):
    """The published numbers' CSV of a table (none when the spec names none or it is absent)."""
    stem = STUDY.tables[wildcards.name]["published"]
    return str(published_csv(stem)) if stem and published_csv(stem).exists() else None


def sensitivity_inputs(wildcards):
    members = STUDY.sweep_members(wildcards.experiment, wildcards.param)
    return {e: path(METRICS, experiment=e, kind="segmentation") for e in members}
