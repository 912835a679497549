"""Rule qc_subject -> itermask.preprocess.qc.qc_subject."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess.qc import qc_subject  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    qc_subject(
        dict(zip(smk.params.sequences, smk.input.images)),
        smk.input.brain,
        smk.output.png,
        smk.output.json,
        label_path=smk.input.label[0] if smk.input.label else None,
        dataset=smk.wildcards.dataset,
        subject=smk.wildcards.subject,
    )
