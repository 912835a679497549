"""Rule infer -> itermask.inference.stage.infer_subject."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.config.settings import ExperimentSettings  # noqa: E402
from itermask.inference.stage import infer_subject  # noqa: E402
from itermask.io.workflow import device_of, rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk) as log:
    infer_subject(
        smk.input.model,
        smk.params.conditions,
        ExperimentSettings.from_dict(smk.params.settings),
        smk.output[0],
        dataset=smk.wildcards.dataset,
        subject=smk.wildcards.subject,
        device=device_of(smk),
        field_of_view_mm=smk.params.field_of_view_mm,
        log=log.info,
    )
