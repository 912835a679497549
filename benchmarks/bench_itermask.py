"""Benchmark of IterMask3D compute: forward, training step and full iterative inference.

Side by side:
  (a) reference-style: fp32, eager, batch 1, one subject after the other, the phase-A
      threshold computed on the host with NumPy each iteration (as a straightforward loop does),
      the decoder upsampling and then convolving (as the reference code);
  (b) optimised: ``itermask.core.iterative_mask_3d.run_itermask3d``: subjects in lockstep batches, per-subject
      quantiles on the device, the pipeline's precision (``precision: auto``: bf16 forward passes on CUDA and
      on CPUs with bf16; training steps autocast on CUDA only), optionally ``--compile``
      (torch.compile) and channels_last_3d (on, as the pipeline's ``resources.channels_last``;
      ``--no-channels-last`` turns it off); the decoder's upsampling and first convolution as one
      transposed convolution, as the pipeline's (``core/networks/upsample_conv.py``).
Random-weight networks from ``itermask.core.networks.build_network``; random volumes with a ball
"brain". Phase B runs exactly ``--phase-b`` iterations in both paths (tol < 0 disables the
convergence stop, so the timings do not depend on what a random network converges to).
Every row is the median of its repeats after one warm-up call (``--repeats`` for forward and
training step, ``--inference-repeats`` for full inference).
Prints a table; asserts nothing. Timings on shared machines vary 1.5-2x between runs:
compare the two columns of one run.

    .venv/bin/python benchmarks/bench_itermask.py                       # CPU, 48^3, small net
    .venv/bin/python benchmarks/bench_itermask.py --size 192 --device cuda --channels 16,32,64,128,256 \
        --step 1 --subjects 4 --compile
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from itermask.core.iterative_mask_3d import phase_a_percents, run_itermask3d  # noqa: E402
from itermask.core.model_input import compose_input  # noqa: E402
from itermask.errors import ConfigError  # noqa: E402
from itermask.io.device import autocast, precision_label, resolve_device  # noqa: E402
from itermask.training.precision import Precision, pick_precision  # noqa: E402

SPATIAL_DIVISOR = 16  # four stride-2 levels of the 3D UNet


def itermask3d_defaults() -> dict:
    """The schema's ``method_defaults.itermask3d`` (network, train, infer): what an experiment that
    sets nothing runs with (the package's functions carry no defaults of their own)."""
    from itermask.config.schema import schema_defaults

    return schema_defaults()["method_defaults"]["itermask3d"]


#: phase B's settings of (b) (the schema's): ``run_itermask3d`` takes every setting
PHASE_B = {k: itermask3d_defaults()["infer"][k] for k in ("phase_b_noise", "phase_b_start")}


def build_model(channels: list[int], device: torch.device, *, two_step_decoder: bool = False) -> nn.Module:
    """The reference 3D UNet (the schema's network settings) with encoder widths ``channels``;
    ``two_step_decoder``: its decoder upsamples, then convolves, as the reference code (the
    pipeline runs the two as one transposed convolution of the same weights)."""
    try:
        from itermask.core.networks import build_network
    except ImportError as exc:  # pragma: no cover - only while the package is incomplete
        raise SystemExit(f"itermask.core.networks.build_network is not available ({exc}); cannot benchmark") from exc
    torch.manual_seed(0)
    network = {**itermask3d_defaults()["network"], "channels": channels}
    net = build_network("itermask3d", 2, network).to(device)
    for module in net.modules():
        if hasattr(module, "transposed_upsampling"):
            module.transposed_upsampling = not two_step_decoder
    return net


class ChannelsLast(nn.Module):
    """Feeds the wrapped network channels_last_3d input."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last_3d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last_3d))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: bool = True
          ) -> tuple[float, float | None]:
    """Median seconds of ``repeats`` calls (after one warm-up call); the GPU memory (GiB) the calls
    add at their peak to what was allocated before them (models, inputs)."""
    if warmup:
        fn()
        sync(device)
    base = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**30 if device.type == "cuda" else None
    return float(np.median(times)), peak


def train_step(net: nn.Module, size: int, device: torch.device, precision: Precision) -> Callable[[], None]:
    """One training step of ``net`` (batch 2 of random size^3 volumes, MSE, Adam), as a
    callable, at ``precision`` (the pipeline's: ``pick_precision``; ``pick_precision(device.type,
    False)`` for fp32)."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scaler)
    inp = torch.randn(2, 2, size, size, size, device=device)
    tgt = torch.randn(2, 1, size, size, size, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with precision.context(device.type):
            loss = nn.functional.mse_loss(net(inp).float(), tgt)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def make_subjects(n: int, size: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * 3, indexing="ij"))
    out = []
    for k in range(n):
        radius = size * (0.36 + 0.04 * k / max(n - 1, 1))
        brain = ((grid - (size - 1) / 2) ** 2).sum(0) <= radius**2
        x = torch.where(brain, torch.randn((size,) * 3, generator=g), torch.tensor(-3.0))
        hf = torch.randn((size,) * 3, generator=g)
        out.append((x, hf, brain))
    return out


def reference_loop(model: nn.Module, subjects, percents, tau_b: float, n_b: int, device: torch.device) -> None:
    """Straightforward per-subject loop: fp32, batch 1, threshold with NumPy on the host."""
    g = torch.Generator(device=device).manual_seed(0)
    for x, hf, brain in subjects:
        x, hf, brain = (t.to(device)[None, None] for t in (x, hf, brain))
        mask = brain.clone()
        for p in percents:
            with torch.no_grad():
                x_hat = model(compose_input(x, hf, mask, "full", generator=g))
            err = ((x - x_hat) ** 2 * brain).cpu().numpy()
            b = brain.cpu().numpy()
            thr = np.percentile(err[b], p)
            mask = torch.from_numpy((err > thr) & b).to(device)
        mask = brain.clone()
        for _ in range(n_b):
            with torch.no_grad():
                x_hat = model(compose_input(x, hf, mask, "full", generator=g))
            err = (x - x_hat) ** 2 * brain
            mask = (err > tau_b) & brain


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=48,
                    help="cube side (a multiple of 16, at least 32); 192 for the reference")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--channels", default="4,8,16,32,64", help="encoder widths (reference 16,32,64,128,256)")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats of forward / training step")
    ap.add_argument("--inference-repeats", type=int, default=3,
                    help="timed repeats of full inference (median reported, after one warm-up)")
    ap.add_argument("--subjects", type=int, default=2, help="subjects in the full-inference comparison")
    ap.add_argument("--batch", type=int, default=0, help="lockstep batch size of (b) (default: --subjects)")
    ap.add_argument("--step", type=float, default=20.0, help="phase-A step in percent (reference 1)")
    ap.add_argument("--phase-b", type=int, default=2, help="phase-B iterations (forced)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network in (b)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                    help="channels_last_3d memory format in (b), as the pipeline (resources.channels_last) "
                         "[default on; --no-channels-last: the default layout]")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = ap.parse_args(argv)
    if args.size < 2 * SPATIAL_DIVISOR or args.size % SPATIAL_DIVISOR:
        ap.error(f"--size must be a multiple of {SPATIAL_DIVISOR} (the network's four stride-2 levels) and at least "
                 f"{2 * SPATIAL_DIVISOR}, got {args.size}")
    for flag, value in (("--repeats", args.repeats), ("--inference-repeats", args.inference_repeats),
                        ("--subjects", args.subjects)):
        if value < 1:
            ap.error(f"{flag} must be at least 1, got {value}")
    try:
        channels = [int(c) for c in args.channels.split(",")]
    except ValueError:
        ap.error(f"--channels must be comma-separated integers, got '{args.channels}'")
    try:
        device = resolve_device(args.device)
    except ConfigError as exc:
        raise SystemExit(f"bench_itermask: --device: {exc}") from exc

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    batch = args.batch or args.subjects
    s = args.size
    ref = build_model(channels, device, two_step_decoder=True).eval()
    opt_net = build_model(channels, device).eval()
    opt_net.load_state_dict(ref.state_dict())
    if args.channels_last:
        opt_net = ChannelsLast(opt_net)
    if args.compile:
        opt_net = torch.compile(opt_net)
    n_params = sum(p.numel() for p in ref.parameters())
    print(f"device {device}, volume {s}^3, channels {channels} ({n_params / 1e6:.2f} M parameters), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"(b): forward {precision_label(device.type, True)}, training step "
          f"{precision_label(device.type, True, training=True)} (the pipeline's), "
          f"compile {args.compile}, "
          f"channels_last_3d {args.channels_last}, lockstep batch {batch}, decoder upsampling as transposed convolutions")
    print(f"timings: median of {args.repeats} (forward, training step) and {args.inference_repeats} "
          "(full inference) runs, each after one warm-up call")
    rows: list[tuple[str, str, float, float | None, float, float | None]] = []

    # forward, per volume
    x1 = torch.randn(1, 2, s, s, s, device=device)
    xb = torch.randn(batch, 2, s, s, s, device=device)

    def fwd_ref():
        with torch.no_grad():
            ref(x1)

    def fwd_opt():
        with torch.inference_mode(), autocast(device.type, True):  # the pipeline's (config precision: auto)
            opt_net(xb)

    ta, ma = timed(fwd_ref, device, args.repeats)
    tb, mb = timed(fwd_opt, device, args.repeats)
    rows.append(("forward", "per volume", ta, ma, tb / batch, mb))

    # training step (batch 2, MSE, Adam), per step
    ref.train()
    opt_net.train()
    ta, ma = timed(train_step(ref, s, device, pick_precision(device.type, False)), device, args.repeats)
    tb, mb = timed(train_step(opt_net, s, device, pick_precision(device.type, True)), device, args.repeats)
    rows.append(("training step", "batch 2", ta, ma, tb, mb))
    ref.eval()
    opt_net.eval()

    # full iterative inference, per subject
    subjects = make_subjects(args.subjects, s)
    percents = phase_a_percents(args.step, fine_from=None)
    tau = 1.0
    ta, ma = timed(lambda: reference_loop(ref, subjects, percents, tau, args.phase_b, device), device,
                   args.inference_repeats)

    def ours() -> None:
        run_itermask3d(opt_net, [t[0] for t in subjects], [t[1] for t in subjects], [t[2] for t in subjects],
                       list(range(len(subjects))), percents=percents, choose_tau=lambda c: (tau, None),
                       variant="full", tol=-1.0, max_iterations=args.phase_b, batch_size=batch, device=device,
                       amp=True, **PHASE_B)

    tb, mb = timed(ours, device, args.inference_repeats)
    n_fwd = len(percents) + args.phase_b
    rows.append(("full inference", f"per subject ({n_fwd} fwd)", ta / len(subjects), ma, tb / len(subjects), mb))

    print()
    head = f"{'what':<16}{'unit':<24}{'(a) reference s':>16}{'(b) optimised s':>16}{'speed-up':>10}"
    if cuda:
        head += f"{'(a) peak GiB':>14}{'(b) peak GiB':>14}"
    print(head)
    print("-" * len(head))
    for what, unit, a, pa, b, pb in rows:
        line = f"{what:<16}{unit:<24}{a:>16.4f}{b:>16.4f}{a / b:>9.2f}x"
        if cuda:
            line += f"{pa:>14.2f}{pb:>14.2f}"
        print(line)


if __name__ == "__main__":
    main()
