"""The raw files a study declares that are missing now: said once before the DAG is planned
(each one fails only its subject's preprocessing job, so the run itself goes on)."""
from __future__ import annotations

from pathlib import Path

from itermask.config.study import Study


def missing_raw_files(study: Study) -> list[tuple[str, str, str]]:
    """(dataset, subject, path) of each declared raw file (image, label, brain-mask file) of the
    configured datasets that does not exist now; the generated demo dataset is skipped (rule
    demo_data writes it)."""
    missing = []
    for name in study.config["datasets"]:
        if name == study.demo_dataset:
            continue
        ds = study.datasets[name]
        for s in ds.subjects:
            missing += [(name, s, f) for f in ds.raw_files(s) if not Path(f).exists()]
    return missing


def missing_raw_files_message(study: Study, shown: int = 10) -> str | None:
    """One warning about `missing_raw_files` (the first `shown` named), or None when none is missing."""
    missing = missing_raw_files(study)
    if not missing:
        return None
    lines = "\n".join(f"  dataset '{d}', subject '{s}': {f}" for d, s, f in missing[:shown])
    more = f"\n  ... and {len(missing) - shown} more" if len(missing) > shown else ""
    per_job = study.resources.preprocess_subjects_per_job
    fails = ("its subject's preprocessing job (snakemake -k finishes the other subjects)" if per_job == 1 else
             f"the preprocessing job of its subject and the others in that job (resources.preprocess_subjects_per_job "
             f"{per_job}; snakemake -k finishes the other jobs)")
    return f"warning: {len(missing)} declared raw file(s) do not exist; each fails {fails}:\n{lines}{more}"
