"""Rule brain_mask -> itermask.preprocess.make_brain_mask."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess import make_brain_mask, qc_skullstrip  # noqa: E402
from itermask.workflow import device_of, rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    make_brain_mask(
        smk.input.image,
        smk.output.mask,
        method=smk.params.method,
        mask_path=smk.input.get("mask"),
        dataset=smk.wildcards.dataset,
        subject=smk.wildcards.subject,
        device=device_of(smk),
    )
    qc_skullstrip(
        smk.input.image, smk.output.mask, smk.output.qc, dataset=smk.wildcards.dataset, subject=smk.wildcards.subject
    )
