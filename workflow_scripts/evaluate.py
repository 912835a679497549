"""Rule evaluate -> itermask.evaluation.evaluate.evaluate_experiment."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.evaluation.evaluate import evaluate_experiment  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    evaluate_experiment(
        smk.wildcards.experiment,
        [tuple(run) for run in smk.params.runs],
        smk.output.segmentation,
        smk.output.detection,
        smk.output.scores,
        protocols=list(smk.params.protocols),
        honest_source=smk.params.honest_source,
        honest_fpr=smk.params.honest_fpr,
        size_bins=list(smk.params.size_bins),
        pooled_anomalies=list(smk.params.pooled_anomalies),
    )
