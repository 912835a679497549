"""Rule evaluate -> itermask.evaluation.evaluate.evaluate_experiment."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.evaluation.evaluate import evaluate_experiment  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    ev = smk.params.evaluation
    evaluate_experiment(
        smk.wildcards.experiment,
        list(smk.input),
        smk.output.segmentation,
        smk.output.detection,
        smk.output.scores,
        protocols=ev.get("protocols", ["honest", "paper", "per_image_best"]),
        honest_fpr=ev.get("honest_fpr", 0.01),
        size_bins=ev.get("size_bins", [200, 800]),
    )
