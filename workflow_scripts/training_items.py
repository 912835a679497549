"""Rule training_items -> itermask.training.items.write_items."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.io.workflow import rule_context  # noqa: E402
from itermask.training.items import write_items  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    write_items(smk.output[0], smk.params.train, smk.params.val)
