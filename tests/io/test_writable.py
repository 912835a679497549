"""Read-only and full results folders: one clear error naming the path, no half-written output."""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from itermask.io.atomic import atomic_path, write_text
from itermask.io.writable import OutputWriteError, explain_write_error, unwritable_reason
from itermask.io.workflow import open_log


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (root only); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("tmpfs cannot be mounted here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _read_only(mount: Path) -> None:
    """Remount the `small_tmpfs` mount read-only (root ignores file modes, so a mode cannot do it)."""
    res = subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True)
    if res.returncode:
        pytest.skip("cannot remount read-only here")


def test_writable_folder_passes_and_keeps_no_probe(tmp_path):
    target = tmp_path / "results" / "deeper"
    assert unwritable_reason(target) is None
    assert target.is_dir() and list(target.iterdir()) == []


def test_read_only_results_folder_is_one_line_naming_it(small_tmpfs):
    _read_only(small_tmpfs)
    reason = unwritable_reason(small_tmpfs / "results")
    assert reason is not None and "\n" not in reason
    assert f"'{small_tmpfs / 'results'}'" in reason and "read-only" in reason


def test_full_disk_is_caught_before_the_first_job(small_tmpfs):
    (small_tmpfs / "filler").write_bytes(b"\0" * (64 * 1024))  # fills it (tmpfs: page granularity)
    reason = unwritable_reason(small_tmpfs)
    assert reason is not None and "no space left" in reason and str(small_tmpfs) in reason


def test_disk_full_during_a_write_names_the_output_and_leaves_nothing(small_tmpfs):
    target = small_tmpfs / "table.csv"
    write_text(target, "old\n")
    with pytest.raises(OutputWriteError) as err:
        write_text(target, "x" * (256 * 1024))
    assert f"cannot write '{target}'" in str(err.value) and "no space left" in str(err.value)
    assert err.value.errno == errno.ENOSPC
    assert target.read_text() == "old\n"  # the previous complete version, never a truncated one
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["table.csv"]


def test_log_on_a_full_disk_names_the_log(small_tmpfs):
    (small_tmpfs / "filler").write_bytes(b"\0" * (64 * 1024))
    with pytest.raises(OutputWriteError, match="cannot write .*job.log.*no space left"):
        open_log(str(small_tmpfs / "logs" / "job.log"))


def test_explain_write_error_only_rewrites_disk_errors(tmp_path):
    full = explain_write_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "a.nii.gz")
    assert isinstance(full, OutputWriteError) and str(full).startswith(f"cannot write '{tmp_path / 'a.nii.gz'}'")
    denied = explain_write_error(PermissionError(errno.EACCES, "Permission denied"), tmp_path / "b")
    assert "no permission to write in" in str(denied)
    other = OSError(errno.EIO, "I/O error")
    assert explain_write_error(other, tmp_path / "c") is other


def test_a_writer_failing_with_enospc_leaves_the_target_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("{}")
    with pytest.raises(OutputWriteError, match="no space left"):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
