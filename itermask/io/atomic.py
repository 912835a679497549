"""Atomic writes: every output is written to a temporary name beside it, then renamed.

A killed job therefore never leaves a half-written file under the final name; its orphaned
temporary (``.<name>.*.tmp*`` beside the output) is removed by the next write of that output.
Files and folders get the user's umask (0644 / 0755 under the usual 022), not the private
0600 / 0700 that ``mkstemp`` / ``mkdtemp`` create. A write that fails because the disk is full
or the folder read-only raises :class:`itermask.io.writable.OutputWriteError` naming the output.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from itermask.io.writable import explain_write_error


def _suffixes(path: Path) -> str:
    """Full suffix (e.g. '.nii.gz') so libraries that sniff the extension still work."""
    return "".join(path.suffixes)


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shareable(path: Path, directory: bool = False) -> None:
    """Give `path` the mode a plain open()/mkdir() would have: 0666 / 0777 less the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def _tmp_pattern(path: Path) -> str:
    return f".{path.name}.*.tmp*"


def remove_orphans(path: str | Path) -> list[Path]:
    """Remove temporary files/folders that a killed writer of `path` left beside it.

    Only names of the form ``.<name of path>.<random>.tmp<suffixes>`` are touched; Snakemake
    runs one job per output at a time, so none of them belongs to a live writer.
    """
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for orphan in path.parent.glob(_tmp_pattern(path)):
            if orphan.is_dir() and not orphan.is_symlink():
                shutil.rmtree(orphan, ignore_errors=True)
            else:
                orphan.unlink(missing_ok=True)
            removed.append(orphan)
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` on success.

    On any exception the temporary file is removed and `path` is left untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + _suffixes(path), dir=path.parent)
    except OSError as exc:
        raise explain_write_error(exc, path) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        shareable(tmp_path)
        yield tmp_path
        if tmp_path.exists():  # a writer may have replaced the file: keep the mode shareable
            shareable(tmp_path)
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise explain_write_error(exc, path) from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` whole."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise explain_write_error(exc, path) from exc
    try:
        shareable(tmp, directory=True)
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise explain_write_error(exc, path) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (sorted keys, indented, NaN rejected)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=_json_default) + "\n")


def write_table(df: Any, path: str | Path, *, sep: str = ",", float_format: str = "%.6g") -> str:
    """Write a pandas DataFrame as CSV (``sep=","``) or TSV atomically: no index, NaN as 'NaN',
    floats as ``float_format``, '\\n' line ends. Returns the path."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep=sep, index=False, na_rep="NaN", float_format=float_format, lineterminator="\n")
    return str(path)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)
    plt.close(fig)
