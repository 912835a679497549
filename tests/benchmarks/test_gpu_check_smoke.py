"""benchmarks/gpu_check.py: the CPU smoke mode runs its checks and prints the comparison table;
without CUDA and without --smoke it says so and stops (status 2)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_smoke_mode_passes_its_checks_and_prints_the_table():
    res = _run("--smoke")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    for check in ("device generators", "lockstep inference"):
        assert f"PASS  {check}" in out
    cuda_only = ("autocast bfloat16 forward", "autocast float16 forward", "GradScaler training step")
    if torch.cuda.is_available():
        assert all(f"PASS  {check}" in out for check in ("autocast float16 forward", "GradScaler training step"))
    else:  # autocast and GradScaler are off on CPU: skipped, never a PASS that cannot fail
        for check in cuda_only:
            assert f"  skip  {check} (no CUDA)" in out and f"PASS  {check}" not in out
    assert "skipped (--smoke)" in out  # the suite's CUDA tests and the pipeline are not part of the smoke
    assert ", 48^3," in out
    for row in ("forward", "training step", "full inference"):
        assert any(line.strip().startswith(row) and line.rstrip().endswith("x") for line in out.splitlines()), row
    assert "every check passed" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_the_full_check_says_so():
    res = _run()
    assert res.returncode == 2
    assert "no CUDA device" in res.stdout and "--smoke" in res.stdout


def _gpu_check_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_compile_failure_falls_back_to_eager_with_the_weights_unchanged(monkeypatch, capsys):
    gc = _gpu_check_module()
    net = gc.build_model([2, 4, 8, 8, 16], torch.device("cpu"))
    before = {k: v.clone() for k, v in net.state_dict().items()}

    class Broken(torch.nn.Module):
        def __init__(self, inner, **kwargs):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            raise RuntimeError("no C compiler\nmore detail")

    monkeypatch.setattr(gc.torch, "compile", Broken)
    out, compiled = gc.compiled_or_eager(net, 32, 2, torch.device("cpu"))
    assert out is net and compiled is False and not net.training
    assert "torch.compile failed here (RuntimeError: no C compiler); (b) runs eager" in capsys.readouterr().out
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_a_working_compile_is_probed_without_changing_the_weights(monkeypatch):
    gc = _gpu_check_module()
    net = gc.build_model([2, 4, 8, 8, 16], torch.device("cpu"))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    calls, batches = [], []

    def fake_compile(m, **kwargs):  # eager stands in for a compiled module; the probe's forward batches
        calls.append(kwargs)
        m.register_forward_pre_hook(lambda mod, args: batches.append(args[0].shape[0]))
        return m

    monkeypatch.setattr(gc.torch, "compile", fake_compile)
    out, compiled = gc.compiled_or_eager(net, 32, 3, torch.device("cpu"))
    assert out is net and compiled is True and not net.training
    assert calls == [{"dynamic": False}] and batches[0] == 3  # static shapes, probed at the lockstep batch
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
