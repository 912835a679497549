"""Rule qc_table -> itermask.preprocess.qc.qc_table."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess.qc import qc_table  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    qc_table(dict(zip(smk.params.subjects, smk.input)), smk.output[0], dataset=smk.wildcards.dataset)
