"""Rule normalise -> itermask.preprocess.stages.resample_and_normalise."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess.stages import resample_and_normalise  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    pre = smk.params.pre
    resample_and_normalise(
        smk.input.image,
        smk.input.grid,
        smk.output.image,
        smk.output.hf,
        repeats=pre.get("zscore_repeats", 3),
        clip_sd=pre.get("zscore_clip_sd", 3.0),
        background=pre.get("background", "min"),
        hf_radius=pre.get("hf_radius", 15),
        dataset=smk.wildcards.dataset,
        subject=smk.wildcards.subject,
    )
