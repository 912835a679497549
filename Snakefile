# IterMask2 / IterMask3D: unsupervised anomaly detection and segmentation in brain MRI.
# Default config = the embedded demo (config.yaml); the papers: --configfile paper.yaml
from snakemake.utils import min_version

min_version("9.0")


if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"


# Resume is one command: a lock left by a dead Snakemake process of this directory is removed
# (never while another one runs here, nor when the run that took it ran on another host: the
# owner is recorded before the lock is taken); profiles/default adds --rerun-incomplete.
if workflow.is_main_process:
    from itermask.io.locks import clear_stale_locks, record_lock_owner

    clear_stale_locks(Path.cwd(), lambda message: print(message, file=sys.stderr))
    # Missing raw files, said once before planning (a dry-run too): each fails only its subject's job
    # (its chunk's, with resources.preprocess_subjects_per_job other than 1).
    from itermask.config.raw_files import missing_raw_files_message

    if (missing := missing_raw_files_message(STUDY)) is not None:
        print(missing, file=sys.stderr)
    if not workflow.dryrun:
        record_lock_owner(Path.cwd())


# A results folder that cannot take files (read-only, full, no permission) is one line naming
# it before the first job (a real run only; itermask/io/writable.py), not a traceback.
onstart:
    from itermask.io.writable import unwritable_reason

    reason = unwritable_reason(R)
    if reason:
        print(reason, file=sys.stderr)
        sys.exit(1)


include: "rules/demo.smk"
include: "rules/preprocess.smk"
include: "rules/artefacts.smk"
include: "rules/train.smk"
include: "rules/infer.smk"
include: "rules/evaluate.smk"
include: "rules/failed_skullstrip.smk"


# Light aggregation rules run where Snakemake runs (a cluster job would cost more than they do).
# Rule figures is not one: it reads every inference folder of an experiment and draws with
# matplotlib, too heavy for a shared login node at cohort scale.
localrules:
    all,
    qc_table,
    table,
    sensitivity,


rule all:
    input:
        all_targets(),
    default_target: True
