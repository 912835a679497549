"""Rule artefacts -> itermask.artefacts.synthetic.make_artefacts."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.artefacts.synthetic import make_artefacts  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk) as log:
    make_artefacts(
        smk.input.image,
        smk.input.brain,
        dict(smk.params.specs),
        list(smk.output.image),
        list(smk.output.hf),
        list(smk.output.json),
        seed=smk.params.seed,
        hf_radius=smk.params.radius,
        other_image_path=smk.input.get("other"),
        dataset=smk.wildcards.dataset,
        subject=smk.wildcards.subject,
        log=log.info,
    )
