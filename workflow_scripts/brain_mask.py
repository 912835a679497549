"""Rule brain_mask -> itermask.preprocess.brain_mask.make_brain_mask, resample_mask, qc_skullstrip."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess.brain_mask import make_brain_mask, qc_skullstrip, resample_mask  # noqa: E402
from itermask.io.workflow import device_of, rule_context  # noqa: E402

smk = snakemake  # noqa: F821
ids = dict(dataset=smk.wildcards.dataset, subject=smk.wildcards.subject)
with rule_context(smk):
    make_brain_mask(
        smk.input.image, smk.output.mask, method=smk.params.method, mask_path=smk.input.get("mask"),
        device=device_of(smk), **ids,
    )
    resample_mask(smk.output.mask, smk.output.grid, spacing_mm=smk.params.spacing, box=list(smk.params.box), **ids)
    qc_skullstrip(smk.input.image, smk.output.mask, smk.output.qc, **ids)
