"""The GPU check (issue 13, item 4): on a CUDA machine, within about 8 minutes,

  1. the test suite's CUDA-only tests (the test files that skip without CUDA),
  2. CUDA checks of the building blocks: autocast (bf16 and fp16) forward, a GradScaler
     training step, seeded device generators, lockstep inference equal to one subject at a time,
  3. a tiny pipeline with ``device: cuda`` (tests/configs/tiny.yaml; deepbet runs on CUDA there),
  4. side by side at 192^3 with the reference 3D UNet (16-32-64-128-256): the
     reference-equivalent loop (fp32, eager, batch 1, per-iteration host round trips, the
     decoder upsampling then convolving) against the optimised path (lockstep batches,
     autocast, channels-last, the decoder's transposed convolutions, ``torch.compile``) for the
     forward, a training step (batch 2) and full IterMask3D inference per subject (1 % steps,
     100 phase-A iterations + phase B), with peak GPU memory per subject.

``--smoke`` runs only a CPU-sized version of 2 (32^3) and 4 (48^3, a small network, 50 % steps) on
whatever device there is; the test suite runs it (tests/benchmarks/test_gpu_check_smoke.py). On CPU
the autocast and GradScaler checks print ``skip ... (no CUDA)``: both are off there.
Without CUDA and without ``--smoke`` the script says so and exits with status 2.
Timings are printed, never asserted; the checks of 1-3 set the exit status (1 on a failure).

    .venv/bin/python benchmarks/gpu_check.py                 # on the GPU machine
    .venv/bin/python benchmarks/gpu_check.py --smoke         # anywhere, seconds
    .venv/bin/python benchmarks/gpu_check.py --skip-tests --skip-pipeline --no-compile
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_itermask import (  # noqa: E402
    PHASE_B, ChannelsLast, build_model, make_subjects, reference_loop, sync, timed, train_step,
)

from itermask.core.iterative_mask_3d import phase_a_percents, run_itermask3d  # noqa: E402
from itermask.core.lockstep import make_generator, sample_noise  # noqa: E402
from itermask.training.precision import pick_precision  # noqa: E402

FAILURES: list[str] = []


def section(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def check(name: str, fn: Callable[[], str | None]) -> None:
    """Run one check; print PASS (with its detail) or FAIL (with the error); record failures."""
    try:
        detail = fn()
        print(f"  PASS  {name}" + (f": {detail}" if detail else ""), flush=True)
    except Exception as exc:  # noqa: BLE001 - a check reports every error
        FAILURES.append(name)
        print(f"  FAIL  {name}: {type(exc).__name__}: {exc}", flush=True)


# -- 1. the suite's CUDA-only tests ----------------------------------------------------------
def cuda_test_files() -> list[str]:
    """Test files with a test that skips without CUDA."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if "not torch.cuda.is_available()" in p.read_text())


def run_cuda_tests(timeout: int) -> None:
    files = cuda_test_files()
    print(f"  files: {' '.join(files)}")
    if not files:  # pytest without paths would run the whole suite
        FAILURES.append("CUDA-only tests")
        print("  FAIL  CUDA-only tests: no test file skips without CUDA")
        return
    try:
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-m", "not slow and not slurm", *files],
                             cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        FAILURES.append("CUDA-only tests")
        print(f"  FAIL  CUDA-only tests: over {timeout} s")
        return
    print("\n".join("  " + line for line in res.stdout.strip().splitlines()[-8:]))
    if res.returncode != 0:
        FAILURES.append("CUDA-only tests")


# -- 2. building blocks on the device --------------------------------------------------------
def block_checks(device: torch.device, size: int, channels: list[int]) -> None:
    net = build_model(channels, device)
    x = torch.randn(2, 2, size, size, size, device=device)

    def autocast(dtype: torch.dtype) -> Callable[[], str]:
        def run() -> str:
            net.eval()
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
                ref = net(x).float()
            with torch.inference_mode():
                exact = net(x).float()
            if not torch.isfinite(ref).all():
                raise AssertionError("non-finite output")
            return f"max |autocast - fp32| = {(ref - exact).abs().max().item():.3g}"
        return run

    def grad_scaler() -> str:
        model = build_model(channels, device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
        target = x[:, :1]
        losses = []
        for _ in range(4):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                loss = nn.functional.mse_loss(model(x).float(), target)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(loss.item())
        if not np.isfinite(losses).all() or losses[-1] >= losses[0]:
            raise AssertionError(f"losses {losses}")
        return f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in 4 steps"

    def generators() -> str:
        a = sample_noise([make_generator(7, device), make_generator(8, device)], (4, 4, 4), device)
        b = sample_noise([make_generator(7, device)], (4, 4, 4), device)
        if not torch.equal(a[:1], b) or torch.equal(a[0], a[1]):
            raise AssertionError("a sample's noise depends on its batch, or two seeds give the same noise")
        return f"seeded per sample on {device}"

    def lockstep() -> str:
        net.eval()
        subjects = make_subjects(2, size)
        args = dict(percents=phase_a_percents(50.0, fine_from=None), choose_tau=lambda c: (float(c[0]), None),
                    variant="full", tol=0.01, max_iterations=2, device=device, amp=False, **PHASE_B)
        one = [run_itermask3d(net, [s[0]], [s[1]], [s[2]], [k], batch_size=1, **args)[0]
               for k, s in enumerate(subjects)]
        both = run_itermask3d(net, *[[s[i] for s in subjects] for i in range(3)], [0, 1], batch_size=2, **args)
        diff = max(float((a.mask ^ b.mask).float().mean()) for a, b in zip(one, both))
        if diff > 1e-3:
            raise AssertionError(f"{diff:.2%} of the voxels differ between batch 1 and batch 2")
        return f"batch 2 = batch 1 (mask voxels differing: {diff:.2e})"

    cuda = device.type == "cuda"  # autocast and GradScaler are off on CPU: nothing to check there
    for dtype in (torch.bfloat16, torch.float16):
        name = f"autocast {str(dtype).split('.')[-1]} forward"
        if not cuda:
            print(f"  skip  {name} (no CUDA)")
        elif dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            print("  skip  autocast bf16: not supported on this GPU")
        else:
            check(name, autocast(dtype))
    if cuda:
        check("GradScaler training step", grad_scaler)
    else:
        print("  skip  GradScaler training step (no CUDA)")
    check("device generators", generators)
    check("lockstep inference", lockstep)


# -- 3. a tiny pipeline on CUDA --------------------------------------------------------------
def run_tiny_pipeline(cores: int, timeout: int) -> None:
    config = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    config["device"] = "cuda"
    work = Path(tempfile.mkdtemp(prefix="gpu_check_tiny_"))
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), "--configfile",
           str(work / "config.yaml"), "--cores", str(cores), "--quiet", "rules"]
    try:
        res = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        ok = res.returncode == 0 and any((work / "results_tiny/tables").glob("*.md"))
        print(f"  {'PASS' if ok else 'FAIL'}  tiny pipeline, device cuda ({work})")
        if not ok:
            FAILURES.append("tiny pipeline on CUDA")
            print("\n".join("    " + line for line in (res.stdout + res.stderr).strip().splitlines()[-25:]))
        else:
            shutil.rmtree(work, ignore_errors=True)
    except subprocess.TimeoutExpired:
        FAILURES.append("tiny pipeline on CUDA")
        print(f"  FAIL  tiny pipeline: over {timeout} s ({work})")


# -- 4. reference-equivalent loop against the optimised path ---------------------------------
def compare(device: torch.device, size: int, channels: list[int], step: float, phase_b: int, batch: int,
            compile_net: bool, repeats: int) -> None:
    from itermask.io.device import autocast, precision_label

    cuda = device.type == "cuda"
    ref = build_model(channels, device, two_step_decoder=True).eval()
    fast = build_model(channels, device).eval()
    fast.load_state_dict(ref.state_dict())
    fast = ChannelsLast(fast)
    if compile_net:
        fast, compile_net = compiled_or_eager(fast, size, batch, device)
    n_params = sum(p.numel() for p in ref.parameters()) / 1e6
    print(f"  {device}, {size}^3, widths {channels} ({n_params:.2f} M parameters), torch {torch.__version__}")
    print(f"  (a): fp32 eager, batch 1{' (TF32 convolutions: cuDNN default, as the reference code)' if cuda else ''}, "
          "upsample then convolve; "
          f"(b): lockstep batch {batch}, forward {precision_label(device.type, True)}, training step "
          f"{precision_label(device.type, True, training=True)} "
          f"(the pipeline's), channels_last_3d, transposed-convolution decoder, torch.compile {'on' if compile_net else 'off'}")
    rows = []
    x1, xb = torch.randn(1, 2, size, size, size, device=device), torch.randn(batch, 2, size, size, size, device=device)

    def forward(net: nn.Module, x: torch.Tensor, amp: bool) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode(), autocast(device.type, amp):  # amp: the pipeline's (precision auto)
                net(x)
        return run

    ta, ma = timed(forward(ref, x1, False), device, repeats)
    tb, mb = timed(forward(fast, xb, True), device, repeats)
    rows.append(("forward", "per volume", ta, ma, tb / batch, mb and mb / batch))

    weights = {k: v.clone() for k, v in ref.state_dict().items()}
    ref.train()
    fast.train()
    ta, ma = timed(train_step(ref, size, device, pick_precision(device.type, False)), device, repeats)
    tb, mb = timed(train_step(fast, size, device, pick_precision(device.type, True)), device, repeats)
    rows.append(("training step", "batch 2 (GiB per step)", ta, ma, tb, mb))
    for net in (ref, fast):  # the training steps changed them: full inference with the same network
        net.zero_grad(set_to_none=True)
        target = getattr(net, "_orig_mod", net)  # torch.compile's wrapper
        (target.net if isinstance(target, ChannelsLast) else target).load_state_dict(weights)
        net.eval()

    n_ref = max(1, min(2, batch))
    subjects = make_subjects(batch, size)
    percents = phase_a_percents(step, fine_from=None)
    # the forward above warmed the reference network up; (b) warms up (compile, autotuning) once
    ta, ma = timed(lambda: reference_loop(ref, subjects[:n_ref], percents, 1.0, phase_b, device), device, 1, False)

    def ours() -> None:
        run_itermask3d(fast, [t[0] for t in subjects], [t[1] for t in subjects], [t[2] for t in subjects],
                       list(range(batch)), percents=percents, choose_tau=lambda c: (1.0, None), variant="full",
                       tol=-1.0, max_iterations=phase_b, batch_size=batch, device=device, amp=True, **PHASE_B)

    tb, mb = timed(ours, device, 1)
    n_fwd = len(percents) + phase_b
    # (a) runs its subjects one after another: its peak is one subject's; (b) holds the batch
    rows.append(("full inference", f"per subject ({n_fwd} fwd)", ta / n_ref, ma, tb / batch, mb and mb / batch))
    print_table(rows, cuda)


def compiled_or_eager(net: nn.Module, size: int, batch: int, device: torch.device) -> tuple[nn.Module, bool]:
    """``torch.compile(net, dynamic=False)`` if a compiled forward (at the lockstep ``batch``,
    the shape (b) runs) and training step run here (they compile on first use, which needs a
    working Triton/C toolchain); else ``net`` eager, with the reason. Static shapes: two graphs
    (inference, training), none recompiled for another batch size."""
    from itermask.io.device import autocast

    compiled = torch.compile(net, dynamic=False)
    state = {k: v.clone() for k, v in net.state_dict().items()}  # the probe's training step changes them
    try:
        with torch.inference_mode(), autocast(device.type, True):  # (b)'s precision: the pipeline's auto
            compiled.eval()(torch.randn(batch, 2, size, size, size, device=device))
        compiled.train()
        train_step(compiled, size, device, pick_precision(device.type, True))()
        compiled.eval()
        ok = True
    except Exception as exc:  # noqa: BLE001 - any compile failure falls back to eager
        print(f"  torch.compile failed here ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}); "
              "(b) runs eager", flush=True)
        ok = False
    net.load_state_dict(state)
    net.eval()
    return (compiled if ok else net), ok


def print_table(rows: list[tuple], cuda: bool) -> None:
    head = f"  {'what':<16}{'unit':<26}{'(a) reference s':>16}{'(b) optimised s':>16}{'speed-up':>10}"
    if cuda:
        head += f"{'(a) GiB/subj':>14}{'(b) GiB/subj':>14}"
    print(head)
    print("  " + "-" * (len(head) - 2))
    for what, unit, a, pa, b, pb in rows:
        line = f"  {what:<16}{unit:<26}{a:>16.4f}{b:>16.4f}{a / b:>9.2f}x"
        if cuda:
            line += f"{pa:>14.2f}{pb:>14.2f}"
        print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU-sized smoke run of checks 2 and 4 (48^3)")
    ap.add_argument("--size", type=int, default=192, help="cube side of 4 (divisible by 16)")
    ap.add_argument("--batch", type=int, default=4, help="lockstep batch of the optimised path")
    ap.add_argument("--phase-b", type=int, default=10, help="phase-B iterations (forced in both paths)")
    ap.add_argument("--no-compile", action="store_true", help="no torch.compile in the optimised path")
    ap.add_argument("--skip-tests", action="store_true", help="skip 1 (the suite's CUDA-only tests)")
    ap.add_argument("--skip-pipeline", action="store_true", help="skip 3 (the tiny pipeline on CUDA)")
    ap.add_argument("--cores", type=int, default=8, help="snakemake --cores of the tiny pipeline")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False): nothing to check here. "
              "Run it on a GPU machine, or use --smoke for the CPU smoke test.")
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    print(f"gpu_check on {name} (torch {torch.__version__}, CUDA {torch.version.cuda})" + (" --smoke" if args.smoke else ""))
    start = time.perf_counter()
    if args.smoke:
        size, channels, step, phase_b, batch, repeats = 48, [2, 4, 8, 8, 16], 50.0, 1, 2, 1
    else:
        size, channels, step, phase_b, batch, repeats = args.size, [16, 32, 64, 128, 256], 1.0, args.phase_b, args.batch, 3

    t = section("1. CUDA-only tests of the suite")
    if args.smoke or args.skip_tests:
        print("  skipped (" + ("--smoke" if args.smoke else "--skip-tests") + ")")
    else:
        run_cuda_tests(timeout=180)
        print(f"  ({time.perf_counter() - t:.0f} s)")
    t = section(f"2. building blocks on {device}")
    block_checks(device, 32 if args.smoke else 64, channels)
    print(f"  ({time.perf_counter() - t:.0f} s)")
    t = section("3. tiny pipeline with device: cuda")
    if args.smoke or args.skip_pipeline:
        print("  skipped (" + ("--smoke" if args.smoke else "--skip-pipeline") + ")")
    else:
        run_tiny_pipeline(args.cores, timeout=240)
        print(f"  ({time.perf_counter() - t:.0f} s)")
    t = section(f"4. reference-equivalent loop (a) against the optimised path (b), {size}^3")
    check("reference against optimised", lambda: compare(device, size, channels, step, phase_b, batch,
                                                         cuda and not args.no_compile, repeats))
    print(f"  ({time.perf_counter() - t:.0f} s)")
    print(f"\ngpu_check: {time.perf_counter() - start:.0f} s, "
          + (f"{len(FAILURES)} failed: {', '.join(FAILURES)}" if FAILURES else "every check passed"))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
