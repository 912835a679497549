"""Stale Snakemake locks: a lock left by a dead Snakemake process is cleared at start-up.

Snakemake locks a working directory with files in ``.snakemake/locks/`` and refuses to run
("Directory cannot be locked ... --unlock") when a killed run left them behind. The Snakefile
calls :func:`clear_stale_locks` in the main process before Snakemake checks the lock; it
removes the lock files only when no other process of this working directory runs Snakemake
(``/proc/<pid>/cmdline`` names snakemake and ``/proc/<pid>/cwd`` is the directory), and
never where /proc cannot tell (then Snakemake's own check applies).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


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
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone, or another user's process: its cwd is not readable
            continue
        if b"snakemake" in cmdline.lower() and cwd == workdir:
            found.append(int(entry.name))
    return sorted(found)


def clear_stale_locks(workdir: str | Path, log: Callable[[str], None] = print,
                      proc: str | Path = "/proc", me: int | None = None) -> list[Path]:
    """Remove ``.snakemake/locks/*.lock`` of `workdir` when no other Snakemake process runs
    there; returns the removed files (none when /proc is missing or a rival is alive)."""
    locks = sorted((Path(workdir) / ".snakemake" / "locks").glob("*.lock"))
    if not locks or not Path(proc, "self").exists():
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
