"""Rules high_frequency, artefact_high_frequency -> itermask.preprocess.high_frequency.write_high_frequency."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess.high_frequency import write_high_frequency  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    write_high_frequency(smk.input.image, smk.output[0], radius=smk.params.radius,
                         dataset=smk.wildcards.dataset, subject=smk.wildcards.subject)
