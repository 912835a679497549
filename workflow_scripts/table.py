"""Rule table -> itermask.evaluation.tables.make_table."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.evaluation.tables import make_table  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    spec = smk.params.spec
    metrics = {e: list(smk.input[e]) for e in spec["experiments"]}
    make_table(spec["name"], spec["kind"], metrics, smk.output.md, smk.output.csv, smk.output.tex, caption=spec["caption"])
