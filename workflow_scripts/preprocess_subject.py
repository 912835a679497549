"""Rule preprocess_subject__<dataset> -> itermask.preprocess.preprocess_subject.preprocess_subject."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.io.workflow import device_of, rule_context  # noqa: E402
from itermask.preprocess.preprocess_subject import PreprocessParams, RawFiles, SubjectOutputs, preprocess_subject  # noqa: E402

smk = snakemake  # noqa: F821
sequences = list(smk.params.raw["images"])
with rule_context(smk) as logger:
    preprocess_subject(
        RawFiles(images=smk.params.raw["images"], label=smk.params.raw["label"], mask=smk.params.raw["mask"]),
        SubjectOutputs(
            checked=smk.output.checked, native_mask=smk.output.mask, grid=smk.output.grid, qc=smk.output.qc,
            images={q: getattr(smk.output, f"image_{q}") for q in sequences},
            hf={q: getattr(smk.output, f"hf_{q}") for q in sequences},
        ),
        PreprocessParams(**smk.params.settings, device=device_of(smk)),
        dataset=smk.params.dataset,
        subject=smk.wildcards.subject,
        logger=logger,
    )
