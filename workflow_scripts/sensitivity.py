"""Rule sensitivity -> itermask.evaluation.figures.sensitivity_stage (one sweep of config `sweeps:`)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.evaluation.figures import sensitivity_stage  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk) as log:
    sensitivity_stage({exp: smk.input[exp] for exp in smk.params.values}, dict(smk.params.values),
                      smk.wildcards.param, smk.output.png, protocols=list(smk.params.protocols), logger=log,
                      out_csv=smk.output.csv, experiment=smk.wildcards.experiment)
