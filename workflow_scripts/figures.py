"""Rule figures -> itermask.evaluation.figures.make_figures."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.evaluation.figures import make_figures  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk) as log:
    runs = [tuple(run) for run in smk.params.runs]
    make_figures(smk.wildcards.experiment, runs, smk.input.segmentation, smk.input.scores, smk.output[0],
                 severity=dict(smk.params.severity), logger=log)
