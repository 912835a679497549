"""Rule table -> itermask.evaluation.tables.make_table, then the published-vs-reproduced comparison."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.evaluation.published import write_comparison  # noqa: E402
from itermask.evaluation.spec import table_experiments  # noqa: E402
from itermask.evaluation.tables import make_table  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    spec = smk.params.spec
    metrics = {e: list(smk.input[e]) for e in table_experiments(spec)}
    make_table(spec, metrics, smk.output.md, smk.output.csv, smk.output.tex, smk.params.training)
    aliases = {row["label"]: row["published_label"] for row in spec["rows"] if row["published_label"]}
    write_comparison(spec["name"], smk.output.csv, smk.params.published, smk.output.vs_md, smk.output.vs_csv, aliases)
