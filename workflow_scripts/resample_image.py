"""Rule resample_image -> itermask.preprocess.resample_image."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess import resample_image  # noqa: E402
from itermask.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    resample_image(
        smk.input.image, smk.input.grid, smk.output[0], dataset=smk.wildcards.dataset, subject=smk.wildcards.subject
    )
