"""Rules preprocess_subject__<dataset> / preprocess_labelled__<dataset> ->
itermask.preprocess.preprocess_subject.preprocess_subject."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.io.workflow import amp_of, rule_context  # noqa: E402
from itermask.preprocess.preprocess_subject import (  # noqa: E402
    PreprocessParams, RawFiles, SliceParams, SubjectOutputs, preprocess_subject,
)

smk = snakemake  # noqa: F821
sequences = list(smk.params.raw["images"])
slices = SliceParams(role=smk.params.slice_role, **smk.params.slices)
with rule_context(smk) as logger:
    preprocess_subject(
        RawFiles(images=smk.params.raw["images"], label=smk.params.raw["label"], mask=smk.params.raw["mask"]),
        SubjectOutputs(
            checked=smk.output.checked, native_mask=smk.output.mask, grid=smk.output.grid, qc=smk.output.qc,
            images={q: getattr(smk.output, f"image_{q}") for q in sequences},
            hf={q: getattr(smk.output, f"hf_{q}") for q in sequences},
            qc_png=smk.output.qc_png, qc_json=smk.output.qc_json, label=getattr(smk.output, "label", None),
            slices={q: getattr(smk.output, f"slices_{q}") for q in sequences if hasattr(smk.output, f"slices_{q}")},
        ),
        PreprocessParams(**smk.params.settings, device=smk.params.device, amp=amp_of(smk), slices=slices),  # Study.skullstrip_device
        dataset=smk.params.dataset,
        subject=smk.wildcards.subject,
        logger=logger,
    )
