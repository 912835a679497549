"""The inference stage reads a model of the experiment's own method or of its family
(``Method.model_family``; config ``model_from``: AutoDDPM on the DDPM's model), nothing else."""
from __future__ import annotations

import pytest
from support import experiment_settings

from itermask.errors import InputError
from itermask.inference.stage import _check_model


def test_a_model_of_the_family_is_read_another_is_refused_naming_the_file():
    settings = experiment_settings("autoddpm")
    for trained in ("autoddpm", "ddpm"):
        _check_model({"method": trained}, settings, "m.pt")
    for trained in ("dae", "not_a_method", None):
        with pytest.raises(InputError, match=f"is a '{trained}' model") as err:
            _check_model({"method": trained}, settings, "m.pt")
        assert "m.pt" in str(err.value)
    _check_model({"method": "dae"}, experiment_settings("dae"), "m.pt")
    with pytest.raises(InputError, match="is a 'ddpm' model"):
        _check_model({"method": "ddpm"}, experiment_settings("dae"), "m.pt")
