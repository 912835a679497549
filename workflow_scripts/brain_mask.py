"""Rule brain_mask -> itermask.preprocess.make_brain_mask."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess import make_brain_mask  # noqa: E402
from itermask.workflow import device_of, rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    make_brain_mask(
        smk.input.image,
        smk.output[0],
        method=smk.params.method,
        mask_path=smk.input.get("mask"),
        dataset=smk.wildcards.dataset,
        subject=smk.wildcards.subject,
        device=device_of(smk),
    )
