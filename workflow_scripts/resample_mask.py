"""Rule resample_mask -> itermask.preprocess.resample_mask."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess import resample_mask  # noqa: E402
from itermask.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    resample_mask(
        smk.input[0],
        smk.output[0],
        spacing_mm=smk.params.spacing,
        box=list(smk.params.box),
        dataset=smk.wildcards.dataset,
        subject=smk.wildcards.subject,
    )
