"""Rule slices2d -> itermask.preprocess.stages.extract_slices2d."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.preprocess.stages import extract_slices2d  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    cfg = smk.params.cfg
    extract_slices2d(
        smk.input.image,
        smk.input.brain,
        smk.output[0],
        label_path=smk.input.label[0] if smk.input.label else None,
        role=smk.params.role,
        size=cfg.get("size", 128),
        train_range_fraction=tuple(cfg.get("train_range_fraction", (0.45, 0.58))),
        hf_radius=cfg.get("hf_radius", 15),
        dataset=smk.wildcards.dataset,
        subject=smk.wildcards.subject,
    )
