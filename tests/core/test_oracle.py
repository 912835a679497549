"""Per-image-best oracle (METHOD.md §7, issue 10): tau raised step by step during the
shrinking, the iteration with the best Dice against the label kept (uses test labels)."""
from __future__ import annotations

import torch

from inference_fakes import Oracle, cube_subject, inpaint_rule

from itermask.core.oracle import dice, oracle_2d, oracle_3d

torch.set_num_threads(1)


def rule(x, h, masked):
    return h if masked is None else inpaint_rule(x, h, masked)


def test_dice_known_values():
    a = torch.zeros((2, 1, 4), dtype=torch.bool)
    b = torch.zeros_like(a)
    a[0, 0, :2] = True
    b[0, 0, 1:] = True  # |a & b| = 1, |a| + |b| = 5
    assert dice(a, b).tolist() == [0.4, 1.0]  # two empty masks agree


def test_3d_oracle_keeps_the_best_iteration_of_the_raised_taus():
    x, hf, brain, h, anomaly = cube_subject(3, (9, 9, 9), (16, 16, 16))
    model = Oracle([(hf, x, h)], rule)
    # tau 0.01: nearly the whole brain; tau 1: the anomaly ((x - h)^2 = 9 there, ~0.02 elsewhere); 100: empty.
    # Each level iterates until the mask changes < tol: 0.01 converges at its 2nd iteration (masked
    # errors are the same, visible ones fall under 0.01), tau 1 starts at iteration 3
    best = oracle_3d(model, x, hf, brain, anomaly, 5, tau=1.0, factors=[0.01, 1.0, 100.0], variant="full",
                     device="cpu", tol=0.01, max_iterations=10)
    assert best.iteration == 3 and best.tau == 1.0 and best.first_step_percentile is None
    assert best.dice == float(dice(best.mask[None, None], anomaly[None, None])) > 0.95
    # levels: 0.01 (2 reconstructions), 1 (the anomaly, unchanged at the 2nd), 100 (empty, then empty again)
    assert len(model.batch_sizes) == 6


def test_3d_oracle_one_reconstruction_per_level_when_capped_at_one():
    x, hf, brain, h, anomaly = cube_subject(3, (9, 9, 9), (16, 16, 16))
    model = Oracle([(hf, x, h)], rule)
    best = oracle_3d(model, x, hf, brain, anomaly, 5, tau=1.0, factors=[0.01, 1.0, 100.0], variant="full",
                     device="cpu", tol=0.01, max_iterations=1)
    assert best.iteration == 2 and best.tau == 1.0 and len(model.batch_sizes) == 3


def test_2d_oracle_searches_first_step_percentiles_and_taus():
    x3, hf3, brain3, h3, anomaly3 = cube_subject(4, (9, 9, 9), (16, 16, 16))
    sl = [(t[:, :, 10:12].permute(2, 0, 1)) for t in (x3, hf3, brain3, h3, anomaly3)]
    x, hf, brain, h, anomaly = sl
    model = Oracle([(hf[k], x[k], h[k]) for k in range(2)], rule)
    best = oracle_2d(model, model, x, hf, brain, anomaly, [1, 2], tau=1.0, first_percentiles=[10, 60],
                     factors=[1.0, 100.0], variant="full", device="cpu", tol=0.01, max_iterations=10)
    for k, b in enumerate(best):
        assert b.iteration == 1 and b.tau == 1.0 and b.first_step_percentile == 10.0  # ties: the first
        assert b.dice == float(dice(b.mask[None, None], anomaly[k][None, None])) > 0.95
