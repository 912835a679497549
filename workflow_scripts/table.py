"""Rule table -> itermask.evaluation.tables.table_stage (the table and its published-vs-reproduced comparison)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.evaluation.spec import table_experiments  # noqa: E402
from itermask.evaluation.tables import table_stage  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    spec = smk.params.spec
    table_stage(spec, {e: list(smk.input[e]) for e in table_experiments(spec)}, smk.input.get("published_numbers"),
                dict(smk.output.items()), smk.params.context)
