# Input functions and parameters of the rules in rules/evaluate.smk.


from itermask.evaluation.published import published_csv
from itermask.evaluation.spec import caption_context, table_experiments


PUBLISHED_INPUT = "published_numbers"  # input key of a table's published CSV (not an experiment name)


def table_inputs(wildcards):
    """Every experiment's metric TSVs, and the published numbers' CSV when the table has one
    (an input, so that a corrected published number regenerates the comparison; the config
    check ``check_table_references`` has made sure it exists)."""
    spec = STUDY.tables[wildcards.name]
    inputs = {e: [path(METRICS, experiment=e, kind=kind) for kind in ("segmentation", "detection", "scores")]
              for e in table_experiments(spec)}
    stem = spec["published"]
    if stem:
        inputs[PUBLISHED_INPUT] = str(published_csv(stem))
    return inputs


def sensitivity_inputs(wildcards):
    members = STUDY.sweep_members(wildcards.experiment, wildcards.param)
    return {e: path(METRICS, experiment=e, kind="segmentation") for e in members}


def aggregate_runtime(seconds_per_subject):
    """Resource runtime (minutes) of a job that reads every inference folder of an experiment
    (evaluate, figures): 30 minutes plus an estimate per subject, so a cohort's job is not killed
    at a fixed limit; `set-resources` overrides it."""
    return lambda w: 30 + int(len(STUDY.inference_subjects(w.experiment)) * seconds_per_subject // 60)
