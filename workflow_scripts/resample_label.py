"""Rule resample_label -> itermask.preprocess.resample_label.resample_label."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess.resample_label import resample_label  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    resample_label(
        smk.input.label,
        smk.input.image,
        smk.input.grid,
        smk.output[0],
        dataset=smk.wildcards.dataset,
        subject=smk.wildcards.subject,
    )
