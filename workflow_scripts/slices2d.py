"""Rule slices2d -> itermask.preprocess.slices2d.extract_slices2d."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess.slices2d import extract_slices2d  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk) as log:
    extract_slices2d(
        smk.input.image,
        smk.input.brain,
        smk.output[0],
        label_path=smk.input.label[0] if smk.input.label else None,
        role=smk.params.role,
        size=smk.params.size,
        field_of_view_mm=smk.params.field_of_view_mm,
        train_range_fraction=tuple(smk.params.train_range_fraction),
        hf_radius=smk.params.radius,
        dataset=smk.wildcards.dataset,
        subject=smk.wildcards.subject,
        log=log.info,
    )
