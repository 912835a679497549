"""Rule artefacts -> itermask.artefacts.synthetic.make_artefact, once per artefact condition."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.artefacts.synthetic import make_artefact  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk) as log:
    for (name, (kind, params)), image, hf, js in zip(
        smk.params.specs.items(), smk.output.image, smk.output.hf, smk.output.json
    ):
        assert f"/{name}/" in image, (name, image)
        log.info("artefact %s (%s) %s", name, kind, params)
        make_artefact(
            smk.input.image,
            smk.input.brain,
            image,
            hf,
            js,
            artefact=name,
            params=params,
            seed=smk.params.seed,
            hf_radius=smk.params.hf_radius,
            other_image_path=smk.input.get("other"),
            dataset=smk.wildcards.dataset,
            subject=smk.wildcards.subject,
        )
