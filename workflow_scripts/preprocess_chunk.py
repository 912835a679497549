"""Rules preprocess__<dataset>__<chunk> -> itermask.preprocess.preprocess_subject.preprocess_subjects."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from itermask.io.workflow import amp_of, rule_context  # noqa: E402
from itermask.preprocess.preprocess_subject import (  # noqa: E402
    PreprocessParams, RawFiles, SliceParams, SubjectJob, outputs_from_named, preprocess_subjects,
)

smk = snakemake  # noqa: F821
with rule_context(smk) as logger:
    jobs = [
        SubjectJob(
            subject=s["subject"],
            raw=RawFiles(images=s["raw"]["images"], label=s["raw"]["label"], mask=s["raw"]["mask"]),
            out=outputs_from_named(s["outputs"], list(s["raw"]["images"])),
            params=PreprocessParams(**smk.params.settings, device=smk.params.device, amp=amp_of(smk),
                                    slices=SliceParams(role=s["slice_role"], **smk.params.slices)),
        )
        for s in smk.params.subjects
    ]
    preprocess_subjects(jobs, dataset=smk.params.dataset, logger=logger)
