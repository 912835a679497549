"""A results folder that cannot take files (read-only, full, not permitted) is reported once,
in one line naming the path, instead of as a raw traceback.

:func:`unwritable_reason` is called by the Snakefile's ``onstart`` hook (a real run, not a
dry-run) before the first job; :func:`explain_write_error` turns the ``OSError`` of a write
that fails later (the disk fills during a job) into one naming the output and its folder. The
writer (``itermask.io.atomic``) has already removed its temporary file then, so no
half-written output is left under the final name.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

#: errno values that mean "this folder cannot take the file", as opposed to a bug in the writer.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


class OutputWriteError(OSError):
    """An output could not be written because of its folder or device; says which and why."""

    def __init__(self, errno_: int | None, message: str, path: str) -> None:
        super().__init__(errno_, message, path)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def describe(exc: OSError, folder: Path) -> str:
    """What an OSError of a write into `folder` means for the user."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        free = _free_bytes(folder)
        left = "" if free is None else f", {free} bytes free"
        return f"no space left on the device (or quota) holding '{folder}'{left}: free space, then rerun the same command"
    if exc.errno == errno.EROFS:
        return f"'{folder}' is on a read-only file system: set results_dir to a writable folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write in '{folder}': make it writable or set results_dir to another folder"
    return exc.strerror or str(exc)


def explain_write_error(exc: OSError, path: str | Path) -> OSError:
    """`exc` itself, or for a disk/permission error an OutputWriteError naming `path`."""
    if isinstance(exc, OutputWriteError) or exc.errno not in DISK_ERRNOS:
        return exc
    path = Path(path)
    return OutputWriteError(exc.errno, f"cannot write '{path}': {describe(exc, path.parent)}", str(path))


def unwritable_reason(folder: str | Path) -> str | None:
    """Why `folder` cannot take new files (None when it can): creates the folder if needed,
    then writes, syncs and removes a one-byte probe file (a real write: as root, permission
    bits say nothing, a read-only mount or a full disk still fail)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".itermask-write-probe.", dir=folder)
        try:
            os.write(fd, b"\0")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        where = Path(exc.filename) if exc.filename else folder
        while not where.exists() and where != where.parent:
            where = where.parent
        where = where if where.is_dir() else where.parent
        return (f"itermask: cannot write to the results folder '{folder}' "
                f"([Errno {exc.errno}] {describe(exc, where)})")
    return None
