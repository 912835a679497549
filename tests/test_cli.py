"""itermask.cli: exit statuses of ``itermask rethreshold`` (0 done, 1 pipeline error, 2 usage)."""
from __future__ import annotations

import pytest

from itermask import cli
from itermask.errors import ConfigError
from itermask.inference import rethreshold as rethreshold_module


@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
    """Replace the re-threshold stage by a recorder that returns a fixed path."""
    seen: list[tuple] = []

    def fake(model, condition_dir, tau, *, device="auto", out_name=None, log=print):
        seen.append((model, condition_dir, tau, device, out_name))
        return "cond/mask_tau-0.25.nii.gz"

    monkeypatch.setattr(rethreshold_module, "rethreshold", fake)
    return seen


def _args(tau: str, *more: str) -> list[str]:
    return ["rethreshold", "--model", "m.pt", "--condition-dir", "cond", "--tau", tau, *more]


def test_success_passes_the_arguments_and_prints_the_mask(calls, capsys):
    assert cli.main(_args("0.25", "--device", "cpu", "--out-name", "mask_mine")) == 0
    assert calls == [("m.pt", "cond", 0.25, "cpu", "mask_mine")]
    assert capsys.readouterr().out.strip() == "cond/mask_tau-0.25.nii.gz"
    assert cli.main(_args("0")) == 0 and calls[-1] == ("m.pt", "cond", 0.0, "auto", None)  # tau 0 is allowed


@pytest.mark.parametrize("tau", ["-0.5", "nan", "inf"])
def test_negative_nan_or_infinite_tau_exits_2_without_running(tau, calls, capsys):
    assert cli.main(_args(tau)) == 2
    assert calls == []
    assert "--tau must be a finite, non-negative number" in capsys.readouterr().err


def test_pipeline_error_exits_1_with_its_message(tmp_path, capsys):
    """The real stage on a folder without result.json raises InputError: exit 1, message on stderr."""
    folder = tmp_path / "not-a-condition"
    argv = ["rethreshold", "--model", "m.pt", "--condition-dir", str(folder), "--tau", "0.5", "--device", "cpu"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no result.json" in err and str(folder) in err


def test_pipeline_and_os_errors_exit_1_but_other_exceptions_propagate(monkeypatch, capsys):
    def config_error(*a, **k):
        raise ConfigError("bad key 'infer.tau'")

    monkeypatch.setattr(rethreshold_module, "rethreshold", config_error)
    assert cli.main(_args("1")) == 1
    assert capsys.readouterr().err.strip() == "error: bad key 'infer.tau'"

    def unwritable(*a, **k):
        raise PermissionError(13, "Permission denied", "cond/mask_tau-1.nii.gz")

    monkeypatch.setattr(rethreshold_module, "rethreshold", unwritable)
    assert cli.main(_args("1")) == 1
    assert "Permission denied" in capsys.readouterr().err

    def crash(*a, **k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(rethreshold_module, "rethreshold", crash)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(_args("1"))


@pytest.mark.parametrize("name", ["mask", "mask.nii.gz", "result", "mask_oracle", "../../escaped", "sub/mask_x",
                                  "mine", ".hidden"])
def test_out_names_that_would_overwrite_or_escape_are_refused(name):
    """An --out-name never replaces the condition's own files nor leaves its folder."""
    from itermask.errors import InputError

    with pytest.raises(InputError, match="give a plain file name starting with 'mask_'"):
        rethreshold_module.output_name(name, 1.0)
    assert rethreshold_module.output_name("mask_mine", 1.0) == "mask_mine.nii.gz"
    assert rethreshold_module.output_name(None, 0.07659955) == "mask_tau-0.07659955.nii.gz"


def test_a_damaged_result_json_or_another_methods_model_is_one_clear_error(tmp_path):
    from itermask.errors import InputError

    (tmp_path / "result.json").write_text("{not json")
    with pytest.raises(InputError, match="result.json is not readable JSON"):
        rethreshold_module.read_previous(tmp_path, {"method": "itermask3d"}, "m.pt")
    (tmp_path / "result.json").write_text('{"method": "itermask3d", "variant": "full", "amp": true, "inputs": {}}')
    with pytest.raises(InputError, match="the model's method 'itermask2' \\(m.pt\\) differs from the condition's "
                                         "'itermask3d'"):
        rethreshold_module.read_previous(tmp_path, {"method": "itermask2"}, "m.pt")
    assert rethreshold_module.read_previous(tmp_path, {"method": "itermask3d"}, "m.pt")["variant"] == "full"


@pytest.mark.parametrize("argv", [[], ["rethreshold", "--model", "m.pt"], _args("abc"), ["nonsense"]])
def test_usage_errors_exit_2_through_argparse(argv, calls):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and calls == []


def test_device_default_is_the_schemas(calls):
    from itermask.config.schema import load_schema

    assert cli.main(_args("0.5")) == 0
    assert calls[-1][3] == load_schema()["properties"]["device"]["default"] == cli.schema_default("device")
