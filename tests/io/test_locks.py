"""itermask.io.locks: a lock left by a dead Snakemake is removed, never while another
Snakemake process runs in the same directory (checked on the real /proc)."""
import subprocess
import sys
import time
from pathlib import Path

import pytest

from itermask.io.locks import clear_stale_locks, live_snakemake_pids

pytestmark = pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")


def stale_lock(workdir: Path) -> Path:
    lock = workdir / ".snakemake" / "locks" / "0.output.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(str(workdir / "results" / "x.tsv") + "\n")
    return lock


def rival(cwd: Path) -> subprocess.Popen:
    """A process whose command line names snakemake, running in `cwd`."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "snakemake"], cwd=cwd)
    for _ in range(500):  # until it has exec'd (a forked child shows its parent's command line)
        if b"snakemake" in Path(f"/proc/{p.pid}/cmdline").read_bytes():
            return p
        time.sleep(0.01)
    raise RuntimeError("the rival process did not start")


def test_a_lock_of_a_dead_run_is_removed(tmp_path):
    lock = stale_lock(tmp_path)
    logs = []
    assert clear_stale_locks(tmp_path, logs.append) == [lock]
    assert not lock.exists() and "stale" in logs[0]
    assert clear_stale_locks(tmp_path, logs.append) == []  # nothing to do


def test_the_lock_stays_while_another_snakemake_runs_here(tmp_path):
    lock = stale_lock(tmp_path)
    elsewhere = rival(tmp_path.parent)  # in another directory: no rival
    here = rival(tmp_path)
    try:
        assert live_snakemake_pids(tmp_path) == [here.pid]
        logs = []
        assert clear_stale_locks(tmp_path, logs.append) == []
        assert lock.exists() and str(here.pid) in logs[0]
    finally:
        for p in (here, elsewhere):
            p.kill()
            p.wait()
    assert clear_stale_locks(tmp_path, print) == [lock]


def test_the_shell_that_started_this_snakemake_is_no_rival(tmp_path):
    """`bash -c "snakemake ..."` and `make demo` are ancestors of the process that checks."""
    lock = stale_lock(tmp_path)
    code = (f"import sys; sys.path.insert(0, {str(Path.cwd())!r}); from itermask.io.locks import clear_stale_locks; "
            "print(len(clear_stale_locks('.', print)))")
    out = subprocess.run(["bash", "-c", f'{sys.executable} -c "{code}"; true # snakemake'], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("1") and not lock.exists()


def test_a_lock_taken_on_another_host_is_kept(tmp_path):
    """/proc sees this machine only: a run on another login node may still hold the lock."""
    from itermask.io.locks import lock_owner_host, record_lock_owner

    assert record_lock_owner(tmp_path, host="login2")  # no lock yet: the run about to take it
    lock = stale_lock(tmp_path)
    assert not record_lock_owner(tmp_path, host="login1")  # a held lock's owner is never overwritten
    assert lock_owner_host(tmp_path) == "login2"
    logs = []
    assert clear_stale_locks(tmp_path, logs.append, host="login1") == []
    assert lock.exists() and "login2" in logs[0] and "--unlock" in logs[0]
    assert clear_stale_locks(tmp_path, logs.append, host="login2") == [lock]  # its own host: /proc decides


def test_a_snakemake_whose_directory_cannot_be_read_counts_as_a_rival(tmp_path):
    """Another user's Snakemake: its cwd link is unreadable, so it may run in this directory."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    for pid, cmd in ((101, b"python\0snakemake\0-c2"), (102, b"bash\0")):
        (proc / str(pid)).mkdir()
        (proc / str(pid) / "cmdline").write_bytes(cmd)
        (proc / str(pid) / "cwd").write_text("")  # not a link: readlink fails as for a foreign process
    assert live_snakemake_pids(tmp_path, proc=proc, me=1) == [101]
    lock = stale_lock(tmp_path)
    assert clear_stale_locks(tmp_path, print, proc=proc, me=1) == [] and lock.exists()
