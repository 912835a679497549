"""Rule fixed_tau -> itermask.inference.tau.fixed_tau_from_results."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.inference.tau import fixed_tau_from_results  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    fixed_tau_from_results([tuple(run) for run in smk.params.runs], smk.output[0])
