"""Rule sensitivity -> itermask.evaluation.figures.sensitivity_figure (one sweep of config `sweeps:`)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.errors import InputError  # noqa: E402
from itermask.evaluation.figures import sensitivity_figure  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk) as log:
    protocols = list(smk.params.protocols)
    protocol = "honest" if "honest" in protocols else protocols[0]  # the primary protocol
    tsvs = {exp: smk.input[exp] for exp in smk.params.values}
    log.info("%s of %s: %s (protocol %s)", smk.wildcards.param, smk.wildcards.experiment,
             dict(smk.params.values), protocol)
    if sensitivity_figure(tsvs, dict(smk.params.values), smk.wildcards.param, smk.output[0],
                          protocol=protocol, metric="dice") is None:
        raise InputError(f"no finite Dice under protocol '{protocol}' in any of {sorted(tsvs.values())}")
