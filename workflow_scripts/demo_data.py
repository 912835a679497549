"""Rule demo_data -> itermask.demo.demo_data.generate_demo."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.demo.demo_data import generate_demo  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    generate_demo(
        smk.params.splits,
        smk.params.images,
        smk.params.labels,
        smk.output.participants,
        voxel_size_mm=smk.params.voxel_size_mm,
        lesion_volumes_ml=smk.params.lesion_volumes_ml,
        seed=smk.params.seed,
        workers=smk.threads,
    )
