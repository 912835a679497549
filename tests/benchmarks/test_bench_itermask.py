"""benchmarks/bench_itermask.py: bad --size / --device are one-line errors before anything runs;
a tiny CPU run says how its timings were taken (median after a warm-up) and prints its rows."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_itermask  # noqa: E402


@pytest.mark.parametrize("size", ["40", "16", "0"])
def test_a_size_the_network_cannot_take_is_a_usage_error(size, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_itermask.main(["--size", size])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--size must be a multiple of 16" in err and f"got {size}" in err and "Traceback" not in err


def test_an_unknown_device_is_a_one_line_error():
    with pytest.raises(SystemExit) as exc:
        bench_itermask.main(["--device", "tpu"])
    assert str(exc.value.code).startswith("bench_itermask: --device: ") and "\n" not in str(exc.value.code)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_one_line_error():
    with pytest.raises(SystemExit) as exc:
        bench_itermask.main(["--device", "cuda"])
    assert str(exc.value.code) == "bench_itermask: --device: device 'cuda' requested but CUDA is not available"


def test_a_tiny_run_states_its_repeats_and_prints_every_row(capsys):
    bench_itermask.main(["--size", "32", "--device", "cpu", "--subjects", "1", "--step", "50", "--phase-b", "1",
                         "--repeats", "1", "--inference-repeats", "2", "--threads", "1"])
    out = capsys.readouterr().out
    assert "median of 1 (forward, training step) and 2 (full inference) runs, each after one warm-up call" in out
    for row in ("forward", "training step", "full inference"):
        assert any(line.startswith(row) and line.rstrip().endswith("x") for line in out.splitlines()), row
