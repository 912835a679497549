"""itermask.training.checkpoint: safe loading (weights_only), generator states round-trip,
checkpoints of another configuration refused, truncated files fall back."""
from __future__ import annotations

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
    assert load_checkpoint(tmp_path, "h", logs.append) is None
    assert "unreadable" in logs[0]


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
