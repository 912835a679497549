"""Stale Snakemake locks: a lock left by a dead Snakemake process is cleared at start-up.

Snakemake locks a working directory with files in ``.snakemake/locks/`` and refuses to run
("Directory cannot be locked ... --unlock") when a killed run left them behind. The Snakefile
calls :func:`clear_stale_locks` in the main process before Snakemake checks the lock; it
removes the lock files only when no other process of this working directory runs Snakemake
(``/proc/<pid>/cmdline`` names snakemake and ``/proc/<pid>/cwd`` is the directory, or cannot
be read: another user's process counts as a rival), and never where /proc cannot tell (then
Snakemake's own check applies).

/proc sees this machine only, and a results folder on a cluster's shared file system may be
locked by a run on another login node. So the run about to take the lock records its host
(:func:`record_lock_owner`, ``.snakemake/itermask_lock_owner``), and a lock whose owner ran on
another host is never cleared here: the message names that host and ``--unlock``.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Callable

OWNER_FILE = Path(".snakemake") / "itermask_lock_owner"


def _ancestors(pid: int, proc: Path) -> set[int]:
    """`pid` and its parents (a shell or `make` that started this Snakemake is no rival)."""
    out = set()
    while pid > 0 and pid not in out:
        out.add(pid)
        try:
            status = (proc / str(pid) / "status").read_text()
        except OSError:
            break
        ppid = [line.split()[1] for line in status.splitlines() if line.startswith("PPid:")]
        pid = int(ppid[0]) if ppid else 0
    return out


def live_snakemake_pids(workdir: str | Path, proc: str | Path = "/proc", me: int | None = None) -> list[int]:
    """Processes other than `me` and its ancestors whose command line mentions snakemake
    (Snakemake itself, its job scripts under .snakemake/) and whose cwd is `workdir`."""
    proc, workdir = Path(proc), Path(workdir).resolve()
    mine = _ancestors(os.getpid() if me is None else me, proc)
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone
            continue
        if b"snakemake" not in cmdline.lower():
            continue
        try:
            cwd: Path | None = Path(os.readlink(entry / "cwd"))
        except FileNotFoundError:  # gone meanwhile
            continue
        except OSError:  # another user's Snakemake: its directory cannot be told, so it may be this one
            cwd = None
        if cwd is None or cwd == workdir:
            found.append(int(entry.name))
    return sorted(found)


def _locks(workdir: str | Path) -> list[Path]:
    return sorted((Path(workdir) / ".snakemake" / "locks").glob("*.lock"))


def record_lock_owner(workdir: str | Path, host: str | None = None) -> bool:
    """Record this host and process as the owner of the lock about to be taken (only when no
    lock is held: a live rival's record is never overwritten); True when written."""
    if _locks(workdir):
        return False
    path = Path(workdir) / OWNER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{host or socket.gethostname()} {os.getpid()}\n")
    os.replace(tmp, path)
    return True


def lock_owner_host(workdir: str | Path) -> str | None:
    """The host recorded by the run that took the lock (None when unrecorded)."""
    try:
        return (Path(workdir) / OWNER_FILE).read_text().split()[0]
    except (OSError, IndexError):
        return None


def clear_stale_locks(workdir: str | Path, log: Callable[[str], None] = print,
                      proc: str | Path = "/proc", me: int | None = None, host: str | None = None) -> list[Path]:
    """Remove ``.snakemake/locks/*.lock`` of `workdir` when the run that took them ran on this
    host (`host`, default this machine's name) and no other Snakemake process runs there;
    returns the removed files (none when /proc is missing, the owner ran elsewhere or a rival
    is alive)."""
    locks = _locks(workdir)
    if not locks or not Path(proc, "self").exists():
        return []
    owner, here = lock_owner_host(workdir), host or socket.gethostname()
    if owner is not None and owner != here:
        log(f"Snakemake lock of {workdir} kept: it was taken by a run on host {owner}, which this machine "
            "cannot see; if that run is dead, remove the lock with `snakemake --unlock`")
        return []
    rivals = live_snakemake_pids(workdir, proc, me)
    if rivals:
        log(f"Snakemake lock of {workdir} kept: Snakemake process(es) {rivals} still run here")
        return []
    for lock in locks:
        lock.unlink(missing_ok=True)
    log(f"Removed a stale Snakemake lock ({len(locks)} file(s) in {locks[0].parent}) left by a run "
        "that no longer exists")
    return locks
