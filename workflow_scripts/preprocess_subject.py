"""Rules preprocess_subject__<dataset> / preprocess_labelled__<dataset> ->
itermask.preprocess.preprocess_subject.preprocess_subject."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.io.workflow import amp_of, rule_context  # noqa: E402
from itermask.preprocess.preprocess_subject import (  # noqa: E402
    PreprocessParams, RawFiles, SliceParams, outputs_from_named, preprocess_subject,
)

smk = snakemake  # noqa: F821
sequences = list(smk.params.raw["images"])
slices = SliceParams(role=smk.params.slice_role, **smk.params.slices)
with rule_context(smk) as logger:
    preprocess_subject(
        RawFiles(images=smk.params.raw["images"], label=smk.params.raw["label"], mask=smk.params.raw["mask"]),
        outputs_from_named(dict(smk.output.items()), sequences),
        PreprocessParams(**smk.params.settings, device=smk.params.device, amp=amp_of(smk), slices=slices),  # Study.skullstrip_device
        dataset=smk.params.dataset,
        subject=smk.wildcards.subject,
        logger=logger,
    )
