"""itermask.training.items: the training job's items file round-trips; a bad one names itself."""
from __future__ import annotations

import pytest

from itermask.errors import InputError
from itermask.training.items import read_items, write_items

TRAIN = [{"subject": "s1", "image": "p/s1/FLAIR.nii.gz", "hf": "p/s1/FLAIR_hf-r15.nii.gz", "brain": "p/s1/brainmask.nii.gz"},
         {"subject": "s2", "slices": "p/s2/FLAIR_slices2d-r15.npz", "sequences": {"T1w": "p/s2/T1w_slices2d-r15.npz"}}]
VAL = [{"subject": "s3", "slices": "p/s3/FLAIR_slices2d-r15.npz"}]


def test_items_round_trip(tmp_path):
    write_items(tmp_path / "m" / "items.json", TRAIN, VAL)
    assert read_items(tmp_path / "m" / "items.json") == (TRAIN, VAL)
    assert not list((tmp_path / "m").glob(".*tmp*"))


@pytest.mark.parametrize("text, problem", [
    ("{not json", "cannot read the training items"),
    ('{"train": [{"subject": "s1"}]}', "expected an object with lists 'train' and 'val'"),
    ('[1, 2]', "expected an object with lists 'train' and 'val'"),
    ('{"train": [], "val": []}', "lists no training subject"),
])
def test_a_bad_items_file_names_itself(tmp_path, text, problem):
    path = tmp_path / "items.json"
    path.write_text(text)
    with pytest.raises(InputError, match=problem) as exc:
        read_items(path)
    assert exc.value.path == str(path)


def test_a_missing_items_file_names_itself(tmp_path):
    with pytest.raises(InputError, match="cannot read the training items") as exc:
        read_items(tmp_path / "nothing.json")
    assert exc.value.path == str(tmp_path / "nothing.json")
