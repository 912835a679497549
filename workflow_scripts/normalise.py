"""Rule normalise -> itermask.preprocess.normalise.resample_and_normalise."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess.normalise import resample_and_normalise  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    resample_and_normalise(
        smk.input.image,
        smk.input.grid,
        smk.output.image,
        smk.output.hf,
        repeats=smk.params.zscore_repeats,
        clip_sd=smk.params.zscore_clip_sd,
        background=smk.params.background,
        hf_radius=smk.params.radius,
        dataset=smk.wildcards.dataset,
        subject=smk.wildcards.subject,
    )
