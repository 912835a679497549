"""The SLURM profile (slurm/config.yaml) on a real single-node SLURM cluster.

The session fixture starts the cluster with tools/slurm_cluster/up.sh (munged, mariadbd,
slurmdbd, slurmctld, slurmd; packages installed with apt if missing) and stops it with
tools/slurm_cluster/down.sh at the end, also when tests fail. Needs root. Run with
`pytest -m slurm tests/workflow/test_slurm_cluster.py`. up.sh keeps the cluster's state in a
private `mktemp -d` folder recorded in /run/itermask-slurm.state; the checks that refuse a folder
up.sh did not create (tests at the end, no cluster needed) run in the fast suite.

Workflows are run through `run_snakemake_with_profile`, which uses the repository's profile
unchanged except for the node size (`--cores` = CPUs of the test node) and a short first status
check (the plugin waits 20 s in the profile, 2 s here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "slurm"
UP = REPO / "tools" / "slurm_cluster" / "up.sh"
DOWN = REPO / "tools" / "slurm_cluster" / "down.sh"
STAND_IN = REPO / "tests" / "fixtures" / "slurm_workflow"
STATE_LIB = REPO / "tools" / "slurm_cluster" / "state.sh"
POINTER = Path(os.environ.get("ITERMASK_SLURM_POINTER", "/run/itermask-slurm.state"))
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


@dataclass(frozen=True)
class SlurmCluster:
    """A running test cluster: its state directory, node size and client environment."""

    state_dir: Path
    cpus: int
    env: dict[str, str]

    @property
    def jobcomp_log(self) -> Path:
        return self.state_dir / "log" / "jobcomp.log"


def _recorded_state_dir() -> Path | None:
    """The state folder of the cluster up.sh started ($ITERMASK_SLURM_DIR, else its pointer file)."""
    if os.environ.get("ITERMASK_SLURM_DIR"):
        return Path(os.environ["ITERMASK_SLURM_DIR"])
    try:
        return Path(POINTER.read_text().splitlines()[0])
    except (OSError, IndexError):
        return None


def _daemon_running(state: Path | None, name: str) -> bool:
    """True when the PID that up.sh recorded for `name` still runs that daemon."""
    if state is None:
        return False
    try:
        pid = int((state / "run" / f"{name}.pid").read_text())
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except (OSError, ValueError):
        return False
    return Path(argv0.decode()).name == name


def _client_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env["SLURM_CONF"] = str(state / "etc" / "slurm.conf")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}:/usr/sbin:/sbin"
    return env


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start the single-node cluster for the session; stop it afterwards (if we started it)."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (it starts munged, mariadbd and the SLURM daemons)")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and apt-get is not available to install it")
    already_up = all(_daemon_running(_recorded_state_dir(), d) for d in DAEMONS)
    t0 = time.monotonic()
    try:
        up = subprocess.run(["bash", str(UP)], capture_output=True, text=True, timeout=900)
        print(up.stdout, file=sys.stderr)
        if up.returncode != 0:
            pytest.fail(f"tools/slurm_cluster/up.sh failed ({up.returncode}):\n{up.stdout}\n{up.stderr}")
        print(f"slurm cluster set-up: {time.monotonic() - t0:.1f} s", file=sys.stderr)
        state = Path(re.findall(r"^ITERMASK_SLURM_DIR=(.+)$", up.stdout, flags=re.M)[-1])
        assert state == _recorded_state_dir(), (state, _recorded_state_dir())
        env = _client_env(state)
        cpus = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%c"], env=env, capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()[0]
        yield SlurmCluster(state_dir=state, cpus=int(cpus), env=env)
    finally:
        if not already_up:
            down = subprocess.run(["bash", str(DOWN)], capture_output=True, text=True, timeout=180)
            print(down.stdout, down.stderr, file=sys.stderr)


def run_snakemake_with_profile(
    cluster: SlurmCluster,
    workdir: Path,
    *args: str,
    snakefile: Path | None = None,
    timeout_s: float = 300,
) -> subprocess.CompletedProcess:
    """Run `snakemake --profile <repo>/slurm` in `workdir` on the test cluster.

    `args` go to Snakemake as they are (targets, `--configfile ...`, `--config ...`). Only the
    node size (`--cores`) and the first status check are overridden. On timeout Snakemake gets
    SIGINT (it then cancels its SLURM jobs) and the test fails with its output.
    """
    cmd = [
        str(SNAKEMAKE),
        "--profile", str(PROFILE),
        "--directory", str(workdir),
        "--cores", str(cluster.cpus),
        "--slurm-init-seconds-before-status-checks", "2",
    ]
    if snakefile is not None:
        cmd += ["--snakefile", str(snakefile)]
    cmd += list(args)
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=cluster.env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"snakemake did not finish within {timeout_s} s:\n{out[-8000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def sacct_jobs(cluster: SlurmCluster, *, name: str) -> dict[str, dict[str, str]]:
    """Accounting records (allocations only) of all jobs named `name`, keyed by job id."""
    fields = ["JobIDRaw", "JobName", "State", "Comment", "AllocCPUS", "AllocTRES", "TimelimitRaw", "Partition"]
    res = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-S", "now-1days", "--name", name, "--format", ",".join(fields)],
        env=cluster.env, capture_output=True, text=True, timeout=30, check=True,
    )
    rows = [dict(zip(fields, line.split("|"))) for line in res.stdout.splitlines() if line.strip()]
    return {r["JobIDRaw"]: r for r in rows}


def jobcomp_records(cluster: SlurmCluster) -> dict[str, dict[str, str]]:
    """Records of the job-completion log (jobcomp/filetxt), keyed by job id."""
    records = {}
    for line in cluster.jobcomp_log.read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in fields:
            records[fields["JobId"]] = fields
    return records


def run_id(output: str) -> str:
    """The SLURM run ID that the executor gives (as job name) to every job of one run."""
    m = re.search(r"SLURM run ID: (\S+)", output)
    assert m, output[-4000:]
    return m.group(1)


def new_workdir(tmp_path: Path) -> tuple[Path, Path]:
    """An empty working directory for one run, and the stand-in Snakefile."""
    work = tmp_path / "work"
    work.mkdir()
    return work, STAND_IN / "Snakefile"


def _job_ids(path: Path) -> list[str]:
    """The `slurm_job=` values written by the stand-in rules into one output."""
    return re.findall(r"slurm_job=(\S*)", path.read_text())


@pytest.mark.slurm
def test_profile_runs_group_and_gpu_jobs_under_slurm(slurm_cluster, tmp_path):
    """Both groups of 2 subjects run as one SLURM job each; the GPU group gets the fake GPU."""
    work, snakefile = new_workdir(tmp_path)
    t0 = time.monotonic()
    res = run_snakemake_with_profile(slurm_cluster, work, snakefile=snakefile, timeout_s=240)
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stdout[-8000:]

    # Every output was written inside a SLURM job; each group's jobs (all subjects) shared one.
    out = work / "out"
    subject_ids = {j for s in ("s1", "s2") for j in _job_ids(out / "norm" / f"{s}.txt")}
    inference_ids = {j for s in ("s1", "s2") for j in _job_ids(out / "infer" / f"{s}.txt")}
    assert len(subject_ids) == 1 and "" not in subject_ids, subject_ids
    assert len(inference_ids) == 1 and "" not in inference_ids, inference_ids
    (subject_job,) = subject_ids
    (inference_job,) = inference_ids
    assert subject_job != inference_job
    for s in ("s1", "s2"):
        norm = (out / "norm" / f"{s}.txt").read_text()
        assert norm.startswith(f"prep {s} ") and f"\nnorm {s} " in norm
        infer = (out / "infer" / f"{s}.txt").read_text()
        assert infer.startswith(f"synth {s} ") and infer.rstrip().endswith("gpus=0")  # fake GPU 0

    # Accounting: exactly these two jobs ran for this run, both completed.
    name = run_id(res.stdout)
    jobs = sacct_jobs(slurm_cluster, name=name)
    assert set(jobs) == {subject_job, inference_job}, jobs
    assert all(j["State"] == "COMPLETED" and j["Partition"] == "debug" for j in jobs.values()), jobs
    assert jobs[subject_job]["Comment"].startswith("rule_subject")
    assert jobs[inference_job]["Comment"].startswith("rule_inference")
    # prep has 2 threads per subject: the group is stacked in layers to fit --cores (node size).
    assert int(jobs[subject_job]["AllocCPUS"]) == slurm_cluster.cpus
    assert "gres/gpu" not in jobs[subject_job]["AllocTRES"]
    # Two GPU jobs in one group: one GPU for the group (profile: gpu=1 per SLURM job), not two.
    assert "gres/gpu=1" in jobs[inference_job]["AllocTRES"]
    # The job-completion log (second record) agrees.
    comp = jobcomp_records(slurm_cluster)
    for job_id in jobs:
        assert comp[job_id]["JobState"] == "COMPLETED" and comp[job_id]["Name"] == name
    print(f"test A: {elapsed:.1f} s for 2 SLURM jobs", file=sys.stderr)


@pytest.mark.slurm
def test_job_killed_at_time_limit_is_retried_and_resumes(slurm_cluster, tmp_path):
    """SLURM kills the first training attempt at its 1-minute limit; the profile's retries
    resubmit it and the new attempt resumes from the checkpoint instead of starting over."""
    work, snakefile = new_workdir(tmp_path)
    epochs = 50  # 2 s each: 100 s of work, more than the first attempt can do before SLURM kills it
    t0 = time.monotonic()
    res = run_snakemake_with_profile(
        slurm_cluster, work, "out/model.json",
        "--config", f"epochs={epochs}", "epoch_seconds=2", "first_runtime=1", "retry_runtime=5",
        snakefile=snakefile, timeout_s=330,
    )
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stdout[-8000:]

    model = json.loads((work / "out" / "model.json").read_text())
    assert model["epochs"] == epochs
    first, *later = model["attempts"]
    assert first["start_epoch"] == 0
    assert later, "the training finished in its first attempt: it was never killed"
    assert 0 < model["resumed_from_epoch"] < epochs  # resumed, not restarted
    assert model["resumed_from_epoch"] == later[-1]["start_epoch"]
    checkpoint = json.loads((work / "checkpoints" / "train.json").read_text())
    assert checkpoint["epoch"] == epochs

    jobs = sacct_jobs(slurm_cluster, name=run_id(res.stdout))
    assert jobs[first["slurm_job"]]["State"] == "TIMEOUT"
    assert jobs[first["slurm_job"]]["TimelimitRaw"] == "1"
    assert jobs[model["slurm_job"]]["State"] == "COMPLETED"
    assert jobs[model["slurm_job"]]["TimelimitRaw"] == "5"
    assert all("gres/gpu=1" in j["AllocTRES"] for j in jobs.values())
    assert model["cuda_visible_devices"] == "0"
    assert len(jobs) == len(model["attempts"])  # one SLURM job per attempt, nothing else
    assert jobcomp_records(slurm_cluster)[first["slurm_job"]]["JobState"] == "TIMEOUT"
    print(f"test B: {elapsed:.1f} s, {len(jobs)} attempts", file=sys.stderr)


LOCAL_RULES = {"all", "qc_table", "table", "sensitivity", "training_items"}


@pytest.mark.slurm
def test_tiny_pipeline_under_slurm_equals_local_run(slurm_cluster, tmp_path, tiny_run):
    """The real pipeline (tiny config) through `--profile slurm`: every non-local job ran as a
    SLURM job that completed, and the metrics equal those of the local run."""
    import pandas as pd

    workdir = tmp_path / "tiny_slurm"
    workdir.mkdir()
    res = run_snakemake_with_profile(
        slurm_cluster, workdir, "--configfile", str(REPO / "tests/configs/tiny.yaml"),
        snakefile=REPO / "Snakefile", timeout_s=1500,
    )
    assert res.returncode == 0, res.stdout[-8000:]
    local_rules = set(re.findall(r"^localrule (\w+):", res.stdout, flags=re.M))
    assert local_rules <= LOCAL_RULES, local_rules
    submitted = set(re.findall(r"SLURM jobid (\d+)", res.stdout))
    assert submitted, res.stdout[-3000:]
    jobs = sacct_jobs(slurm_cluster, name=run_id(res.stdout))
    assert set(jobs) == submitted
    assert all(j["State"] == "COMPLETED" for j in jobs.values()), jobs
    for exp in ("im3d", "im3d_fixed", "im2"):
        for kind in ("segmentation", "detection"):
            ours = pd.read_csv(workdir / f"results_tiny/metrics/{exp}/{kind}.tsv", sep="\t")
            local = pd.read_csv(tiny_run / f"results_tiny/metrics/{exp}/{kind}.tsv", sep="\t")
            pd.testing.assert_frame_equal(ours, local, check_exact=False, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the private state folder
# No cluster needed: state.sh's checks and down.sh on stand-in daemons (processes whose argv[0]
# is a daemon's name). Root only, like the scripts (a folder's owner must be root).
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="up.sh/down.sh run as root; the checks need root's files")


def _bash(script: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ITERMASK_SLURM")}
    env.update(env_extra or {})
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)


def _create_state(tmp_path: Path, pointer: Path) -> Path:
    res = _bash(f'source "{STATE_LIB}"; state_create', {"TMPDIR": str(tmp_path), "ITERMASK_SLURM_POINTER": str(pointer)})
    assert res.returncode == 0, res.stderr
    return Path(res.stdout.strip())


def _check(state: Path) -> subprocess.CompletedProcess:
    return _bash(f'source "{STATE_LIB}"; state_check "{state}"')


@needs_root
def test_state_folder_is_private_recorded_and_checked(tmp_path):
    pointer = tmp_path / "pointer"
    state = _create_state(tmp_path, pointer)
    assert state.parent == tmp_path and state.name.startswith("itermask-slurm.") and len(state.name) > 20
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert pointer.read_text().splitlines() == [str(state)] and oct(pointer.stat().st_mode & 0o777) == "0o600"
    assert _check(state).returncode == 0, _check(state).stdout
    os.chmod(state, 0o755)  # up.sh opens it for the munge socket: still ours
    assert _check(state).returncode == 0
    # A second creation never reuses the name.
    assert _create_state(tmp_path, tmp_path / "pointer2") != state


@needs_root
@pytest.mark.parametrize("case", ["other_owner", "no_marker", "symlink", "group_writable", "foreign_marker", "open_parent"])
def test_state_folder_not_made_by_up_is_refused(tmp_path, case):
    state = _create_state(tmp_path, tmp_path / "pointer")
    if case == "other_owner":  # another local user made it first (and copied a marker in)
        os.chown(state, 65534, 65534)
        expect = "not owned by root"
    elif case == "no_marker":
        (state / ".itermask-slurm-state").unlink()
        expect = "up.sh did not create it"
    elif case == "symlink":
        link = tmp_path / "link"
        link.symlink_to(state)
        state, expect = link, "symbolic link"
    elif case == "group_writable":
        os.chmod(state, 0o775)
        expect = "writable by other users"
    elif case == "foreign_marker":
        other = tmp_path / "copy"
        shutil.copytree(state, other)
        state, expect = other, "names another directory"
    else:  # a parent another user can write (could swap the folder)
        parent = tmp_path / "open"
        parent.mkdir()
        os.chmod(parent, 0o777)
        moved = parent / state.name
        state.rename(moved)
        (moved / ".itermask-slurm-state").write_text(f"itermask-slurm-state {moved}\n")
        state, expect = moved, "parent"
    res = _check(state)
    assert res.returncode != 0 and expect in res.stdout, res.stdout


def _fake_daemon(name: str) -> subprocess.Popen:
    """A process whose argv[0] is `name` (down.sh identifies its daemons by PID and argv[0]),
    reaped as soon as it exits (a zombie would still count as running)."""
    proc = subprocess.Popen(["bash", "-c", f"exec -a {name} sleep 120"])
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc


@needs_root
def test_down_stops_only_what_up_recorded_and_refuses_foreign_folders(tmp_path):
    pointer = tmp_path / "pointer"
    env = {"ITERMASK_SLURM_POINTER": str(pointer), "ITERMASK_SLURM_STOP_TIMEOUT_S": "5"}
    state = _create_state(tmp_path, pointer)
    (state / "run").mkdir()
    ours, unrecorded, foreign = _fake_daemon("slurmd"), _fake_daemon("slurmd"), _fake_daemon("munged")
    try:
        time.sleep(0.3)
        (state / "run" / "slurmd.pid").write_text(f"{ours.pid}\n")
        # A folder another user owns, whose pid file names a live process: refused, nothing stopped.
        evil = tmp_path / "evil"
        evil.mkdir()
        (evil / "run").mkdir()
        (evil / "run" / "munged.pid").write_text(f"{foreign.pid}\n")
        (evil / ".itermask-slurm-state").write_text(f"itermask-slurm-state {evil}\n")
        os.chown(evil, 65534, 65534)
        res = _bash(f'bash "{DOWN}" --purge', {**env, "ITERMASK_SLURM_DIR": str(evil)})
        assert res.returncode == 1 and "refusing state directory" in res.stderr, res.stderr
        assert foreign.poll() is None and evil.is_dir()
        # The recorded folder: only the recorded slurmd is stopped, then the folder and pointer go.
        res = _bash(f'bash "{DOWN}" --purge', env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"stopped slurmd (pid {ours.pid})" in res.stdout
        assert ours.wait(timeout=10) == -signal.SIGTERM
        assert unrecorded.poll() is None and foreign.poll() is None
        assert not state.exists() and not pointer.exists()
        # Nothing recorded any more: nothing to stop.
        res = _bash(f'bash "{DOWN}"', env)
        assert res.returncode == 0 and "nothing to stop" in res.stdout
    finally:
        for p in (ours, unrecorded, foreign):
            p.kill()
            p.wait()
