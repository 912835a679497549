"""itermask.training.checkpoint: safe loading (weights_only), generator states round-trip,
checkpoints of another configuration refused, truncated files fall back, unreadable ones stop
training (never a silent restart), data fingerprint, scaler states across device types."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from itermask.errors import InputError
from itermask.training.checkpoint import (checkpoint_folder, config_hash, load_checkpoint, rng_states,
                                          save_checkpoint, set_rng_states)


def draws():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(), [random.random() for _ in range(3)]


def test_generator_states_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's legacy state
    save_checkpoint(tmp_path, {"config_hash": "h", "rng": rng_states()})
    expected = draws()
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    state = torch.load(tmp_path / "latest.pt", weights_only=True)  # plain values and tensors only
    set_rng_states(state["rng"])
    assert draws() == expected


def test_previous_is_kept_and_a_truncated_latest_falls_back(tmp_path):
    save_checkpoint(tmp_path, {"config_hash": "h", "step": 1})
    save_checkpoint(tmp_path, {"config_hash": "h", "step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", "previous.pt"]
    data = (tmp_path / "latest.pt").read_bytes()
    (tmp_path / "latest.pt").write_bytes(data[: len(data) // 2])
    logs = []
    assert load_checkpoint(tmp_path, "h", logs.append)["step"] == 1
    assert "unreadable" in logs[0]


def test_a_checkpoint_holding_code_is_never_unpickled(tmp_path):
    """weights_only=True: a file whose unpickling would call a function is skipped, not run."""
    class Boom:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"config_hash": "h", "x": Boom()}, tmp_path / "latest.pt")
    logs = []
    with pytest.raises(InputError, match="no readable checkpoint.*UnpicklingError"):
        load_checkpoint(tmp_path, "h", logs.append)
    assert "unreadable" in logs[0]


def test_a_truncated_latest_resumes_from_a_good_previous(tmp_path):
    """A zip checkpoint cut short (OSError or RuntimeError from torch.load) falls back to previous.pt."""
    save_checkpoint(tmp_path, {"config_hash": "h", "step": 1, "w": torch.ones(1000)})
    save_checkpoint(tmp_path, {"config_hash": "h", "step": 2, "w": torch.ones(1000)})
    data = (tmp_path / "latest.pt").read_bytes()
    for cut in (len(data) - 5, len(data) // 2, 10):
        (tmp_path / "latest.pt").write_bytes(data[:cut])
        logs = []
        assert load_checkpoint(tmp_path, "h", logs.append)["step"] == 1
        assert len(logs) == 2 and str(tmp_path / "latest.pt") in logs[0] and "trying the previous one" in logs[0]


def test_unreadable_checkpoints_stop_training_instead_of_restarting(tmp_path):
    """Files there but none readable: InputError naming each (a restart would overwrite them)."""
    save_checkpoint(tmp_path, {"config_hash": "h", "step": 1})
    save_checkpoint(tmp_path, {"config_hash": "h", "step": 2})
    latest, previous = tmp_path / "latest.pt", tmp_path / "previous.pt"
    latest.write_bytes(latest.read_bytes()[:40])
    previous.write_bytes(bytes(range(256)) * 8)  # random bytes, not a checkpoint
    before = latest.read_bytes(), previous.read_bytes()
    with pytest.raises(InputError) as e:
        load_checkpoint(tmp_path, "h", lambda _: None)
    msg = str(e.value)
    assert str(latest) in msg and str(previous) in msg and "delete" in msg and "afresh" in msg
    assert e.value.path == str(tmp_path)
    assert (latest.read_bytes(), previous.read_bytes()) == before  # both left as they were
    previous.unlink()  # an unreadable latest alone is refused too
    with pytest.raises(InputError, match="no readable checkpoint") as e:
        load_checkpoint(tmp_path, "h", lambda _: None)
    assert str(latest) in str(e.value) and str(previous) not in str(e.value)
    latest.write_bytes(b"")  # an empty file: EOFError with no message
    with pytest.raises(InputError, match="EOFError"):
        load_checkpoint(tmp_path, "h", lambda _: None)


def test_only_unreadable_files_are_skipped_other_errors_propagate(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, {"config_hash": "h", "step": 1})
    save_checkpoint(tmp_path, {"config_hash": "h", "step": 2})

    def no_memory(*args, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr(torch, "load", no_memory)
    with pytest.raises(MemoryError):  # not taken for a corrupt file, not reported as one
        load_checkpoint(tmp_path, "h", lambda _: None)


def test_no_checkpoint_files_is_a_fresh_start(tmp_path):
    logs = []
    assert load_checkpoint(tmp_path, "h", logs.append) is None
    assert load_checkpoint(tmp_path / "missing", "h", logs.append) is None
    assert logs == []


def test_a_checkpoint_of_another_configuration_is_refused_not_overwritten(tmp_path):
    save_checkpoint(tmp_path, {"config_hash": "a" * 64, "step": 3})
    with pytest.raises(InputError, match=r"configuration aaaaaaaaaaaaaaaa, this run is bbbbbbbbbbbbbbbb.*refusing") as e:
        load_checkpoint(tmp_path, "b" * 64, print)
    assert str(tmp_path / "latest.pt") in str(e.value)


def test_each_configuration_has_its_own_folder(tmp_path):
    h1, h2 = config_hash({"lr": 1e-3}), config_hash({"lr": 5e-4})
    assert h1 != h2 and config_hash({"lr": 1e-3}) == h1
    # pinned: must stay stable across processes, since resuming finds its checkpoint folder by this hash
    assert h1 == "bb90828f77b30c96d42de602c3ff8230fde7c67c88d740e11928a88b857a89eb"
    assert h2 == "81f6cc610b1b3a8dca1597ece151e6461c1ca6837057cd13b8c5057589513086"
    assert config_hash({"b": 1, "a": 2}) == config_hash({"a": 2, "b": 1})  # key order does not matter
    assert checkpoint_folder(tmp_path, h1) == tmp_path / h1[:16] != checkpoint_folder(tmp_path, h2)


def test_data_fingerprint_follows_size_and_mtime_of_every_item_file(tmp_path):
    from itermask.training.checkpoint import data_fingerprint, item_files

    for name in ("img", "hf", "brain", "t1"):
        (tmp_path / name).write_bytes(b"abc")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "b").write_bytes(b"12")
    (tmp_path / "folder" / "a").write_bytes(b"1")
    item = {"subject": "s0", "image": str(tmp_path / "img"), "hf": None, "brain": str(tmp_path / "brain"),
            "sequences": {"T1": str(tmp_path / "t1")}, "extra": str(tmp_path / "folder")}
    assert item_files(item) == [str(tmp_path / n) for n in ("img", "brain", "t1", "folder")]
    first = data_fingerprint([item])
    assert [row[0] for row in first] == [str(tmp_path / n) for n in ("img", "brain", "t1", "folder/a", "folder/b")]
    assert first[0][1:] == [3, (tmp_path / "img").stat().st_mtime_ns]
    assert data_fingerprint([item]) == first  # unchanged files: the same fingerprint
    for changed in ("t1", "folder/a"):  # a further sequence, a file inside a folder item
        before = (tmp_path / changed).stat().st_mtime_ns
        os.utime(tmp_path / changed, ns=(before + 10**9, before + 10**9))
        assert data_fingerprint([item]) != first
        os.utime(tmp_path / changed, ns=(before, before))
    assert data_fingerprint([item]) == first
    (tmp_path / "img").write_bytes(b"abcd")  # the same mtime is possible on coarse clocks: the size differs
    assert data_fingerprint([item]) != first


def test_a_scaler_state_is_loaded_only_where_it_fits():
    """An fp16 CUDA run resumed from a CPU/bf16 checkpoint meets an empty scaler state, and the
    reverse a state for a disabled scaler: both are skipped instead of failing."""
    from itermask.training.checkpoint import load_scaler

    enabled = torch.amp.GradScaler("cpu", enabled=True)  # an enabled cuda scaler disables itself without CUDA
    assert enabled.is_enabled()
    with pytest.raises(RuntimeError, match="empty"):  # torch's own behaviour, which load_scaler avoids
        torch.amp.GradScaler("cpu", enabled=True).load_state_dict({})
    assert load_scaler(enabled, {}) is False
    assert enabled.get_scale() == 65536.0  # starts fresh
    saved = {**enabled.state_dict(), "scale": 1024.0}
    assert load_scaler(enabled, saved) is True and enabled.get_scale() == 1024.0
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    assert load_scaler(disabled, saved) is False and not disabled.is_enabled()
    assert load_scaler(disabled, {}) is False


def test_an_unreadable_latest_is_set_aside_so_saves_keep_the_good_previous(tmp_path):
    """After a fallback the next save must not rotate the corrupt latest.pt onto previous.pt."""
    save_checkpoint(tmp_path, {"config_hash": "h", "step": 1})
    save_checkpoint(tmp_path, {"config_hash": "h", "step": 2})
    latest = tmp_path / "latest.pt"
    corrupt = latest.read_bytes()[:40]
    latest.write_bytes(corrupt)
    logs = []
    assert load_checkpoint(tmp_path, "h", logs.append)["step"] == 1
    assert (tmp_path / "latest.pt.unreadable").read_bytes() == corrupt and not latest.exists()
    assert "latest.pt.unreadable" in logs[-1]
    save_checkpoint(tmp_path, {"config_hash": "h", "step": 3})  # resumed training saves again
    assert torch.load(tmp_path / "previous.pt", weights_only=True)["step"] == 1
    assert torch.load(latest, weights_only=True)["step"] == 3
    assert load_checkpoint(tmp_path, "h", logs.append)["step"] == 3


def test_an_unreadable_latest_stays_put_when_previous_belongs_to_another_run(tmp_path):
    save_checkpoint(tmp_path, {"config_hash": "other", "step": 1})
    save_checkpoint(tmp_path, {"config_hash": "other", "step": 2})
    latest = tmp_path / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:40])
    with pytest.raises(InputError, match="belongs to configuration"):
        load_checkpoint(tmp_path, "h", lambda _: None)
    assert latest.exists() and not (tmp_path / "latest.pt.unreadable").exists()
