"""itermask.preprocess.qc.qc_table: one row per subject QC JSON; an unreadable JSON is an
InputError naming the file, the subject and the dataset."""
from __future__ import annotations

import json

import pytest

from itermask.errors import InputError
from itermask.preprocess.qc import qc_table


def _record(path, subject):
    record = {"dataset": "ds", "subject": subject, "brain_volume_ml": 1.5,
              "sequences": {"T1w": {"mean": 0.1, "std": 1.0}}}
    path.write_text(json.dumps(record))
    return path


def test_qc_table_rows_from_a_subject_mapping(tmp_path):
    paths = {s: _record(tmp_path / f"sub-{s}.json", s) for s in ("a", "b")}
    qc_table(paths, tmp_path / "qc.tsv", dataset="ds")
    lines = (tmp_path / "qc.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["dataset", "subject", "brain_volume_ml", "T1w_mean", "T1w_std"]
    assert [line.split("\t")[1] for line in lines[1:]] == ["a", "b"]


@pytest.mark.parametrize("text", ['{"dataset": "ds", "subj', "[1, 2]", None])
def test_a_corrupt_qc_json_names_the_file_and_subject(tmp_path, text):
    good = _record(tmp_path / "sub-a.json", "a")
    bad = tmp_path / "sub-b.json"
    if text is not None:  # None: the file is missing
        bad.write_text(text)
    with pytest.raises(InputError, match="QC statistics") as err:
        qc_table({"a": good, "b": bad}, tmp_path / "qc.tsv", dataset="ds")
    assert (err.value.path, err.value.subject, err.value.dataset) == (str(bad), "b", "ds")
    assert "sub-b.json" in str(err.value)
    assert not (tmp_path / "qc.tsv").exists()
