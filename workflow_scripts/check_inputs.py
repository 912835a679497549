"""Rule check_inputs -> itermask.preprocess.check_inputs.check_inputs."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess.check_inputs import check_inputs  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    check_inputs(
        smk.params.images,
        smk.params.label,
        smk.params.mask,
        smk.output[0],
        mask_sequence=smk.params.mask_sequence,
        dataset=smk.wildcards.dataset,
        subject=smk.wildcards.subject,
    )
