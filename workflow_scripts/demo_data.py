"""Rule demo_data -> itermask.demo.demo_data.generate_demo."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.demo.demo_data import generate_demo  # noqa: E402
from itermask.io.workflow import rule_context  # noqa: E402

smk = snakemake  # noqa: F821
with rule_context(smk):
    entry = smk.config["datasets"][smk.params.dataset]
    demo = smk.config["demo"]
    splits = {k: list(v) for k, v in entry["splits"].items()}
    generate_demo(
        entry["pattern"],
        entry["label_pattern"],
        splits,
        list(entry["sequences"]),
        voxel_size_mm=demo.get("voxel_size_mm", 2.0),
        lesion_volumes_ml=demo.get("lesion_volumes_ml", [0.5, 2.0, 8.0, 25.0]),
        seed=smk.config.get("seed", 0),
    )
