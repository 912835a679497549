"""Rule train -> itermask.training.loop.train_experiment."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.config.settings import ExperimentSettings  # noqa: E402
from itermask.io.workflow import amp_of, device_of, rule_context  # noqa: E402
from itermask.training.items import read_items  # noqa: E402
from itermask.training.loop import train_experiment  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk) as log:
    train_experiment(
        ExperimentSettings.from_dict(smk.params.settings),
        *read_items(smk.input.items_file),
        out_model=smk.output.model,
        out_loss_tsv=smk.output.loss,
        out_loss_png=smk.output.png,
        checkpoint_dir=smk.params.checkpoint_dir,
        device=device_of(smk),
        amp=amp_of(smk),
        channels_last=smk.params.channels_last,
        log=log.info,
    )
