"""Rules infer and infer__<experiment>__<dataset>__<chunk> -> itermask.inference.stage.infer_runs."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.config.settings import ExperimentSettings  # noqa: E402
from itermask.inference.stage import Run, infer_runs  # noqa: E402
from itermask.io.workflow import amp_of, device_of, rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk) as log:
    infer_runs(
        smk.input.model,
        [Run(**run) for run in smk.params.runs],
        ExperimentSettings.from_dict(smk.params.settings),
        device=device_of(smk),
        amp=amp_of(smk),
        channels_last=smk.params.channels_last,
        field_of_view_mm=smk.params.field_of_view_mm,
        log=log.info,
    )
