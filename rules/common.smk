# The study (validated config, defaults filled), path templates, wildcard constraints and
# targets. Each rule file's input functions live beside it in rules/inputs/<file>.smk (which
# it includes); every path one rule reads from another comes from the templates below (fill
# one with `path(TEMPLATE, **values)`, or some of its wildcards with `at(TEMPLATE, ...)`).
import inspect
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))
from itermask.config.study import FAILED_STRIP_MASK, Study  # noqa: E402
from snakemake.common import overwrite_function_params  # noqa: E402

STUDY = Study(config, base_dir=Path(workflow.basedir))
R = STUDY.results
RES = STUDY.resources
PRE = f"{R}/preproc/{{dataset}}/sub-{{subject}}"
ART = f"{R}/artefacts/{{dataset}}/{{sequence}}/sub-{{subject}}/{{artefact}}"

# -- path templates ----------------------------------------------------------------------
INPUTS_CHECKED = f"{PRE}/inputs_checked.json"  # the input check, the first stage of a subject's preprocessing job
NATIVE_BRAIN = f"{PRE}/native_brainmask.nii.gz"
BRAIN = f"{PRE}/brainmask.nii.gz"  # the subject's target grid
LABEL = f"{PRE}/label.nii.gz"
IMAGE = f"{PRE}/{{sequence}}.nii.gz"
HF = f"{PRE}/{{sequence}}_hf-r{{radius}}.nii.gz"
SLICES = f"{PRE}/{{sequence}}_slices2d-r{{radius}}.npz"
ART_IMAGE = f"{ART}/image.nii.gz"
ART_HF = f"{ART}/image_hf-r{{radius}}.nii.gz"
ART_JSON = f"{ART}/params.json"
QC_SKULLSTRIP = f"{R}/qc/{{dataset}}/sub-{{subject}}_skullstrip.png"
QC_SUBJECT_PNG = f"{R}/qc/{{dataset}}/sub-{{subject}}.png"
QC_SUBJECT_JSON = f"{R}/qc/{{dataset}}/sub-{{subject}}.json"
QC_TABLE = f"{R}/qc/{{dataset}}_qc.tsv"
FAILED_SKULLSTRIP = f"{R}/qc/{{dataset}}_failed_skullstrip.tsv"  # the set's record (selection)
FS = f"{R}/failed_skullstrip/{{dataset}}/sub-{{subject}}"  # a failed-strip candidate
FS_TOOL_MASK = f"{FS}/mask-{{tool}}.nii.gz"  # tool: hd_bet, template (deepbet: NATIVE_BRAIN)
FS_AGREEMENT = f"{FS}/agreement.json"
FS_OUTLIER = FAILED_STRIP_MASK.format(results=R, dataset="{dataset}", subject="{subject}")  # brain masks of <dataset>failedstrip
assert FS_OUTLIER.startswith(FS)
MODEL = f"{R}/models/{{experiment}}/model.pt"
CHECKPOINTS = f"{R}/checkpoints/{{experiment}}"  # training checkpoints, one sub-folder per config hash (not an output)
TRAIN_ITEMS = f"{R}/models/{{experiment}}/items.json"  # the training job's one input (rule training_items)
LOSS_TSV = f"{R}/models/{{experiment}}/loss.tsv"
LOSS_PNG = f"{R}/models/{{experiment}}/loss.png"
INFERENCE = f"{R}/inference/{{experiment}}/{{dataset}}/sub-{{subject}}"
METRICS = f"{R}/metrics/{{experiment}}/{{kind}}.tsv"  # kind: segmentation, detection, scores
FIGURES = f"{R}/figures/{{experiment}}"
SENSITIVITY = f"{R}/figures/sensitivity/{{experiment}}_{{param}}.png"
SENSITIVITY_DATA = f"{R}/figures/sensitivity/{{experiment}}_{{param}}.csv"  # the figure's points
TABLE = f"{R}/tables/{{name}}.{{ext}}"  # ext: md, csv, tex
TABLE_VS_PUBLISHED = f"{R}/tables/{{name}}_vs_published.{{ext}}"  # ext: md, csv


def path(template, **values):
    """A template with every wildcard filled."""
    return template.format(**values)


def signed(func):
    """`func` with its parameters worked out once. Snakemake looks up the parameters of a rule's
    function (input, params, group) at every call, with inspect.signature unless the function
    carries them (snakemake.common.overwrite_function_params), and calls a group function thrice
    per job."""
    func.__signature__ = inspect.signature(func)
    overwrite_function_params(func, func.__signature__.parameters)
    return func


def cluster_group(name):
    """A rule's `group:`: `name` where groups act (a cluster executor, or --group-components
    given, as the SLURM profile does, also in its dry-runs), else none. Local runs ignore groups;
    forming them in a local dry-run costs time quadratic in the subjects (Snakemake checks each
    group job's outside dependencies, e.g. the training job's whole upstream, one by one)."""

    def group(wildcards):
        active = workflow.non_local_exec or workflow.group_settings.group_components
        return name if active else None

    return signed(group)


def at(template, **values):
    """A template with some wildcards filled, the others kept (a rule's output pattern)."""
    for key, value in values.items():
        template = template.replace(f"{{{key}}}", str(value))
    return template


wildcard_constraints:
    dataset="[A-Za-z0-9]+",
    subject="[A-Za-z0-9]+",
    sequence=r"(?!(?:label|brainmask)\b)[A-Za-z0-9]+",  # label/brainmask.nii.gz are not sequences
    experiment="[A-Za-z0-9_]+",
    param="tau_percentile|hf_radius|gamma",
    artefact="[a-z_0-9]+(-s[0-9]+)?",
    name="[A-Za-z0-9_]+",
    radius="[0-9]+",
    tool="hd_bet|template",


def chunks_of(items, per_job):
    """(index, items) of `items` in consecutive groups of `per_job` (0: one group of all); the
    multi-subject inference and preprocessing jobs."""
    n = per_job or len(items)
    return [(i // n, items[i:i + n]) for i in range(0, len(items), n)]


# Radii of the HF images of rules high_frequency and artefact_high_frequency: any but
# preprocess.hf_radius, which the subject's preprocessing job and rule artefacts write, so no HF
# file has two candidate jobs (tests/workflow/test_dag_planning.py).
def radius_other_than(radius):
    """A {radius} wildcard constraint: any whole number but `radius`."""
    return f"(?!{radius}(?![0-9]))[0-9]+"


OTHER_RADIUS = radius_other_than(STUDY.preprocess.hf_radius)


# -- targets -----------------------------------------------------------------------------
def all_targets():
    """QC, metrics of every experiment (sweeps' derived ones included), per-experiment figures
    of the configured experiments, sensitivity figures, tables, failed skull-strip sets."""
    targets = [path(QC_TABLE, dataset=d) for d in STUDY.config["datasets"]]  # not <ds>failedstrip
    targets += [path(METRICS, experiment=e, kind="segmentation") for e in STUDY.experiments]
    targets += [path(FIGURES, experiment=e) for e in STUDY.config["experiments"]]
    targets += [path(SENSITIVITY, experiment=e, param=p) for e, p in STUDY.sweeps]
    targets += [path(TABLE, name=t, ext=ext) for t in STUDY.tables for ext in ("md", "csv", "tex")]
    targets += [path(FAILED_SKULLSTRIP, dataset=d) for d in STUDY.config["datasets"] if STUDY.failed_strip_dataset(d)]
    return targets
