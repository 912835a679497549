"""Fault injection on the tiny pipeline (issue 12): the whole Snakemake process group is killed
with SIGKILL inside one stage, the same command is run again, and it finishes with final tables
byte-equal to those of the uninterrupted run (the session's `tiny_run`).

Each fault starts from a copy of the finished tiny run cut back to the state of a first run
that got as far as one job of the stage: the outputs of that job and of everything downstream
of it are removed (the jobs `snakemake -n --forcerun <output>` lists), and its log; the log
appearing marks the job as started; the kill comes at a seeded random point after it (a
fraction of the job's wall time in the reference run), or when the job has written that output,
whichever is first.
`make test-faults` runs this whole file: one kill per stage. The stages marked `faults` are left
out of `make test` (`-m "not faults"`), which keeps the bounded subset (the cheap table stage,
on the session's tiny run) and the disk tests; the read-only test is fast.
"""
from __future__ import annotations

import ctypes
import os
import random
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, SNAKEMAKE, TINY, run_snakemake
from itermask.io.runlog import parse_run_log

R = "results_tiny"
CHEAP = {"table"}  # the subset that `make test` runs (about 2 minutes on 2 busy cores)


@dataclass(frozen=True)
class Stage:
    """One job of a stage: one of its outputs, its log, and files to remove (checkpoints)."""

    rule: str
    output: str  # relative to the results folder: a file or a directory output
    log: str  # relative to the results folder
    remove: tuple[str, ...] = ()


STAGES = {
    # One job (a lesioned subject's): input check, skull-strip, per sequence resampling + z-score
    # + HF, label, FLAIR slices, QC. Its last output is the target, so the kill can land in any
    # of its stages (or as it ends).
    "preprocess": Stage("preprocess_labelled__tiny", "qc/tiny/sub-t06.json", "logs/preprocess_subject/tiny_t06.log"),
    "artefacts": Stage("artefacts", "artefacts/tiny/FLAIR/sub-t05/ghosting/params.json",
                       "logs/artefacts/tiny_FLAIR_t05.log"),
    # Training from scratch (its checkpoints removed): the kill lands before or after the first
    # checkpoint (every 20 of 40 steps); the rerun starts over or resumes.
    "train": Stage("train", "models/im2/model.pt", "logs/train/im2.log", remove=("checkpoints/im2",)),
    "infer": Stage("infer", "inference/im3d/tiny/sub-t06", "logs/infer/im3d_tiny_t06.log"),
    "evaluate": Stage("evaluate", "metrics/im3d/segmentation.tsv", "logs/evaluate/im3d.log"),
    "table": Stage("table", "tables/segmentation.csv", "logs/table/segmentation.log"),
}
@pytest.fixture(scope="module")
def reference(tiny_run, tmp_path_factory) -> Path:
    """A frozen copy of the uninterrupted tiny run: the source of every fault's working copy."""
    ref = tmp_path_factory.mktemp("faults") / "reference"
    shutil.copytree(tiny_run, ref, symlinks=True)
    assert sorted((ref / R / "tables").glob("*.csv")), "the tiny run wrote no tables"
    return ref


def _stage_seconds(workdir: Path, rule: str) -> float:
    """The longest wall time of a job of `rule`'s stage (a loop-made rule `<stage>__<parts>`
    counts under its stage) in the reference run's Snakemake logs (>= 1 s)."""
    times = [t for log in sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
             for t in parse_run_log(log.read_text().splitlines()).jobs.get(rule.split("__")[0], [])]
    return max(times + [1.0])


def _working_copy(reference: Path, dest: Path, stage: Stage) -> Path:
    """A copy of the finished run as if a first run had got as far as this job: the outputs of
    the job and of every job downstream of it (those `--forcerun <output>` would run) removed."""
    shutil.copytree(reference, dest, symlinks=True)
    dry = run_snakemake(dest, "-n", "--forcerun", f"{R}/{stage.output}")
    assert dry.returncode == 0, dry.stderr[-3000:]
    outputs = {p.strip() for line in re.findall(r"^\s+output: (.+)$", dry.stdout + dry.stderr, flags=re.M)
               for p in line.split(",")}
    assert f"{R}/{stage.output}" in outputs, sorted(outputs)
    for rel in sorted(outputs) + [f"{R}/{r}" for r in (*stage.remove, stage.log)]:
        target = dest / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    return dest


def _temporaries(workdir: Path, stage: Stage) -> list[Path]:
    """Temporaries (`.<name>.*.tmp*`) of the stage's output, being written now."""
    target = workdir / R / stage.output
    return list(target.parent.glob(f".{target.name}.*.tmp*")) if target.parent.is_dir() else []


def _output_written(workdir: Path, stage: Stage) -> bool:
    return (workdir / R / stage.output).exists()


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except OSError:
                continue
    return members


def kill_inside(workdir: Path, stage: Stage, *, delay_s: float, timeout_s: float = 900) -> str:
    """Run the pipeline in `workdir` in its own process group; `delay_s` after the stage's job
    started (its log appeared), SIGKILL the whole group. Returns where the kill landed."""
    env = dict(os.environ, PATH=f"{Path(SNAKEMAKE).parent}:{os.environ['PATH']}")
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--configfile", str(TINY), "--cores", "2"]
    with open(workdir / "killed_run.out", "w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    log = workdir / R / stage.log
    deadline = time.monotonic() + timeout_s
    try:
        while not log.exists():
            assert proc.poll() is None, f"snakemake ended before the {stage.rule} job started:\n" + \
                (workdir / "killed_run.out").read_text()[-3000:]
            assert time.monotonic() < deadline, f"the {stage.rule} job did not start in {timeout_s} s"
            time.sleep(0.02)
        started = time.monotonic()
        # Up to `delay_s`, but no later than the moment the job's outputs exist (a fast job):
        # Snakemake has not recorded the job as finished then.
        while time.monotonic() - started < delay_s and not _output_written(workdir, stage):
            assert proc.poll() is None, "snakemake finished before the kill"
            time.sleep(0.01)
        writing = bool(_temporaries(workdir, stage))
        finished = _output_written(workdir, stage)
        elapsed = time.monotonic() - started
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for _ in range(100):  # SIGKILL reached every process of the group: nothing survives
        if not _group_members(proc.pid):
            break
        time.sleep(0.05)
    assert not _group_members(proc.pid)
    where = "as its outputs appeared" if finished else "while writing an output" if writing else "while it ran"
    return f"{stage.rule}: killed {elapsed:.2f} s after its log appeared, {where}"


def rerun_and_compare(workdir: Path, reference: Path, stage: Stage) -> None:
    """The same command again: it clears the dead run's lock, reruns what the kill left
    incomplete, finishes, and every final table equals the uninterrupted run's byte for byte."""
    res = run_snakemake(workdir)
    output = res.stdout + res.stderr
    assert res.returncode == 0, output[-6000:]
    assert "Removed a stale Snakemake lock" in output, output[-3000:]
    assert f"rule {stage.rule}:" in output  # the killed job ran again
    ref_tables = sorted(p.relative_to(reference) for p in (reference / R / "tables").glob("*.csv"))
    new_tables = sorted(p.relative_to(workdir) for p in (workdir / R / "tables").glob("*.csv"))
    assert new_tables == ref_tables
    for rel in ref_tables:
        assert (workdir / rel).read_bytes() == (reference / rel).read_bytes(), rel
    assert not list((workdir / R).rglob(".*.tmp*")), "orphaned temporaries left behind"
    dry = run_snakemake(workdir, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n if n in CHEAP else pytest.param(n, marks=pytest.mark.faults) for n in STAGES])
def test_sigkill_inside_each_stage_then_the_same_command_finishes(name, reference, tmp_path, capsys):
    stage = STAGES[name]
    rng = random.Random(f"itermask-faults-{name}")
    delay = rng.uniform(0.1, 0.9) * _stage_seconds(reference, stage.rule)
    work = _working_copy(reference, tmp_path / "work", stage)
    where = kill_inside(work, stage, delay_s=delay)
    with capsys.disabled():
        print(f"\n[{name}] {where} (seeded delay {delay:.2f} s)")
    rerun_and_compare(work, reference, stage)


# ---------------------------------------------------------------- full disk, read-only folder


def _mount_tmpfs(folder: Path, options: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("a small tmpfs results folder needs root")
    folder.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("tmpfs cannot be mounted here")


@pytest.fixture
def mounts():
    mounted: list[Path] = []
    yield mounted
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_full_disk_fails_the_job_naming_the_path_and_leaves_no_half_written_output(reference, tmp_path, mounts):
    """Results on a 40 KiB tmpfs: the logs and the input check's report fit, the subject's
    preprocessing outputs do not; the failed job's outputs are removed, its log stays."""
    results = tmp_path / "full"
    _mount_tmpfs(results, "size=40k")
    mounts.append(results)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(reference / "data", work / "data")
    target = results / "preproc/tiny/sub-t01/brainmask.nii.gz"
    res = run_snakemake(work, "--config", f"results_dir={results}", "--", str(target), timeout=900)
    output = res.stdout + res.stderr
    assert res.returncode != 0
    assert f"OutputWriteError: cannot write '{results}/" in output, output[-4000:]
    assert "no space left on the device" in output
    assert not list(results.rglob(".*.tmp*")), list(results.rglob("*"))
    left = sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file())
    assert left == ["logs/preprocess_subject/tiny_t01.attempts.log",
                    "logs/preprocess_subject/tiny_t01.log"], left  # no output of the failed job (logs only)


def _drop_dac_override() -> None:
    """preexec_fn: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so the
    exec'd process (and its children), though still uid 0, is held to permission bits like any
    owner. (Running as `nobody` instead does not work here: the venv's interpreter lives under
    /root, mode 0700, and pytest's temporary folders under /tmp/pytest-of-root, mode 0700.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH (linux/capability.h)
        if libc.prctl(24, cap, 0, 0, 0):  # PR_CAPBSET_DROP; needs CAP_SETPCAP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _run_snakemake_as_root_without_dac_override(workdir: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    """conftest.run_snakemake, with the capabilities that let root ignore permission bits dropped."""
    try:
        subprocess.run(["true"], preexec_fn=_drop_dac_override, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"root cannot drop CAP_DAC_OVERRIDE here (no CAP_SETPCAP?): {exc}")
    env = dict(os.environ, PATH=f"{Path(SNAKEMAKE).parent}:{os.environ['PATH']}")
    return subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--configfile", str(TINY), "--cores", "2", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=_drop_dac_override,
    )


@pytest.mark.parametrize("how", ["read_only_mount", "no_permission"])
def test_read_only_results_folder_is_one_line_naming_it(how, tmp_path, mounts):
    results = tmp_path / "results_ro"
    run = run_snakemake
    if how == "read_only_mount":
        _mount_tmpfs(results, "size=64k,ro")
        mounts.append(results)
    else:
        results.mkdir()
        results.chmod(0o555)
        if os.geteuid() == 0:  # root ignores permission bits unless it gives up CAP_DAC_OVERRIDE
            run = _run_snakemake_as_root_without_dac_override
    work = tmp_path / "work"
    work.mkdir()
    res = run(work, "--config", f"results_dir={results}", timeout=600)
    assert res.returncode != 0
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("itermask:")]
    assert lines == [lines[0]] and f"cannot write to the results folder '{results}'" in lines[0], res.stderr[-3000:]
    reason = {"read_only_mount": "is on a read-only file system", "no_permission": "no permission to write in"}[how]
    assert reason in lines[0], lines[0]  # the errno's own explanation (itermask.io.writable.describe)
    assert "Traceback" not in res.stderr and not list(results.iterdir())
    assert not list((work / ".snakemake" / "locks").glob("*"))  # the lock is released
