"""itermask.io.atomic: modes follow the umask, orphaned temporaries are removed, failures
leave the target untouched."""
import os
import stat
from pathlib import Path

import pytest

from itermask.io.atomic import atomic_dir, atomic_path, remove_orphans, write_json, write_table, write_text


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def umask():
    def set_mask(value):
        old.append(os.umask(value))
    old = []
    yield set_mask
    if old:
        os.umask(old[0])


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                      (0o077, 0o600, 0o700)])
def test_files_and_folders_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    write_text(tmp_path / "a.tsv", "x\n")
    with atomic_dir(tmp_path / "run") as d:
        write_json(d / "result.json", {"a": 1})
    assert mode(tmp_path / "a.tsv") == file_mode  # mkstemp alone gives 0600
    assert mode(tmp_path / "run") == dir_mode  # mkdtemp alone gives 0700
    assert mode(tmp_path / "run" / "result.json") == file_mode


def test_a_writer_that_replaces_the_temporary_still_gets_the_umask(tmp_path, umask):
    umask(0o022)
    with atomic_path(tmp_path / "img.nii.gz") as tmp:
        tmp.unlink()
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    assert mode(tmp_path / "img.nii.gz") == 0o644


def test_orphans_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    orphan = tmp_path / ".image.nii.gz.k1ll3d.tmp.nii.gz"
    orphan.write_bytes(b"half")
    orphan_dir = tmp_path / ".sub-01.abc.tmp"
    orphan_dir.mkdir()
    (orphan_dir / "recon.nii.gz").write_bytes(b"half")
    other = tmp_path / ".image_hf-r15.nii.gz.abc.tmp.nii.gz"  # another output's temporary
    other.write_bytes(b"x")
    write_text(tmp_path / "image.nii.gz", "ok")
    with atomic_dir(tmp_path / "sub-01"):
        pass
    assert not orphan.exists() and not orphan_dir.exists()
    assert other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "image.nii.gz", "sub-01"]


def test_remove_orphans_touches_only_the_outputs_own_pattern(tmp_path):
    (tmp_path / ".a.tsv.1.tmp.tsv").write_text("")
    (tmp_path / ".a.tsvx.1.tmp.tsv").write_text("")
    (tmp_path / "a.tsv").write_text("keep")
    assert [p.name for p in remove_orphans(tmp_path / "a.tsv")] == [".a.tsv.1.tmp.tsv"]
    assert (tmp_path / "a.tsv").read_text() == "keep"
    assert remove_orphans(tmp_path / "missing" / "a.tsv") == []


def test_failure_leaves_the_target_and_no_temporary(tmp_path):
    write_text(tmp_path / "t.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "t.txt") as tmp:
            tmp.write_text("new, half")
            raise RuntimeError("killed")
    assert (tmp_path / "t.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_write_table_formats_as_every_table_and_tsv_of_the_pipeline(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"row": ["a", "b"], "dice": [0.123456789, float("nan")], "n": [3, 4]})
    assert write_table(df, tmp_path / "t.csv") == str(tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_bytes() == b"row,dice,n\na,0.123457,3\nb,NaN,4\n"
    write_table(df, tmp_path / "t.tsv", sep="\t", float_format="%.10g")
    assert (tmp_path / "t.tsv").read_bytes() == b"row\tdice\tn\na\t0.123456789\t3\nb\tNaN\t4\n"
    assert not list(tmp_path.glob(".*tmp*"))
