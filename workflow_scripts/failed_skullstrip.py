"""Rule failed_skullstrip -> itermask.artefacts.failed_skullstrip.build_failed_skullstrip_set."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.artefacts.failed_skullstrip import build_failed_skullstrip_set  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    build_failed_skullstrip_set(
        dict(zip(smk.params.subjects, smk.input.agreements)), smk.output[0],
        n_subjects=smk.params.n_subjects, dataset=smk.wildcards.dataset,
    )
