"""Glue for workflow scripts: logging to the rule's log file and thread limits."""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

ATTEMPT_HEADER = "===== itermask job attempt"


class _Tee:
    """A text stream writing to several streams (the rule's log and the attempts history)."""

    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for st in self.streams:
            st.write(text)
        return len(text)

    def flush(self) -> None:
        for st in self.streams:
            st.flush()

    def close(self) -> None:
        for st in self.streams:
            st.close()


def attempts_path(log_path: str | Path) -> Path:
    """The history of every attempt of a rule's log: ``x.log`` -> ``x.attempts.log``. Snakemake
    deletes a job's declared log before each attempt, so earlier attempts live on only here."""
    path = Path(log_path)
    return path.with_name(f"{path.stem}.attempts{path.suffix or '.log'}")


def open_log(log_path: str) -> tuple[Any, int]:
    """Open the rule's log and its attempts history (both appended) and write a header naming
    this attempt (1 + the headers already in the history), the host, pid and time."""
    from itermask.io.writable import explain_write_error

    path = Path(log_path)
    history = attempts_path(path)
    attempt = 1
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if history.exists():
            with open(history, errors="replace") as old:
                attempt += sum(line.startswith(ATTEMPT_HEADER) for line in old)
        stream = _Tee(open(path, "a", buffering=1), open(history, "a", buffering=1))
        stream.write(f"{ATTEMPT_HEADER} {attempt} on {socket.gethostname()} pid {os.getpid()} "
                     f"at {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n")
    except OSError as exc:  # full disk / read-only log folder: say which file
        raise explain_write_error(exc, path) from None
    return stream, attempt


@contextlib.contextmanager
def rule_context(smk: Any) -> Iterator[logging.Logger]:
    """Send stdout/stderr of the rule's script to its log file and to the log's attempts
    history (``attempts_path``: appended, one header per attempt), limit threads, log timing.

    Errors are written to the log with their traceback and re-raised, so Snakemake marks
    the job failed and removes its declared outputs.
    """
    threads = int(getattr(smk, "threads", 1) or 1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[var] = str(threads)
    log_path = smk.log[0] if len(smk.log) else None
    stream = open_log(log_path)[0] if log_path else sys.stderr
    logger = logging.getLogger(f"itermask.{smk.rule}")
    logger.handlers.clear()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    start = time.perf_counter()
    if "torch" in sys.modules:  # otherwise OMP_NUM_THREADS above applies when it is imported
        sys.modules["torch"].set_num_threads(threads)
    try:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            logger.info("rule %s wildcards %s threads %d", smk.rule, dict(smk.wildcards), threads)
            yield logger
        logger.info("done in %.1f s", time.perf_counter() - start)
    except Exception as exc:
        logger.error("%s: %s\n%s", type(exc).__name__, exc, traceback.format_exc())
        raise
    finally:
        if log_path:
            with contextlib.suppress(OSError):  # a full disk must not hide the job's own error
                stream.close()


def device_of(smk: Any) -> str:
    """The device named by config ``device`` ('auto' -> CUDA when available), resolved here."""
    from itermask.io.device import resolve_device

    return str(resolve_device(smk.config["device"]))  # filled by the schema


def config_amp(config: Any) -> bool:
    """Autocast on (config ``precision: auto``, ``itermask.io.device.autocast_dtype``) or off (fp32)."""
    return config["precision"] != "fp32"  # filled by the schema


def amp_of(smk: Any) -> bool:
    """:func:`config_amp` of the rule's config."""
    return config_amp(smk.config)
