"""benchmarks/honest_split.py: size groups, seeded validation draws, the honest Dice of the
others on hand-built error maps, and a smoke run on gamma_sweep's tiny study."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import honest_split  # noqa: E402
from test_gamma_sweep import _tiny_study  # noqa: E402


def test_size_groups_take_the_nearest_configured_size_in_log_volume():
    assert honest_split.size_groups([0.3, 0.9, 2.5, 7.0, 8.0, 100.0], [0.5, 4.0, 15.0, 60.0]) == [0, 0, 1, 1, 2, 3]


def test_random_splits_draw_per_size_from_every_group_reproducibly():
    groups = [0, 1, 0, 1, 0, 1]
    draws = honest_split.random_splits(groups, 1, 20, seed=3)
    assert draws == honest_split.random_splits(groups, 1, 20, seed=3)
    assert all(len(v) == 2 and {groups[i] for i in v} == {0, 1} for v in draws)
    assert len({tuple(v) for v in draws}) > 1
    with pytest.raises(SystemExit, match="more than --per-size 3"):
        honest_split.random_splits(groups, 3, 1, seed=0)


def test_honest_dice_known_answer():
    """Validation subject 0's lesion errors are 5 (normal 1), so any theta in [1, 5) is best there;
    the test subjects' Dice follow from where it falls: subject 1 (lesion 4, normal 2) is exact
    for theta >= 2, else the whole brain; subject 2 (lesion 1.5, normal 0.5) exact below 1.5, else empty."""
    brain = np.ones((4, 4, 4), dtype=bool)
    label = np.zeros((4, 4, 4), dtype=bool)
    label[0, :2] = True
    errs = [np.where(label, 5.0, 1.0), np.where(label, 4.0, 2.0), np.where(label, 1.5, 0.5)]
    theta, score = honest_split.honest_dice(errs, [label] * 3, [brain] * 3, [0], [1])
    assert 1.0 <= theta < 5.0 and score == pytest.approx(1.0 if theta >= 2.0 else 2 * 8 / (8 + 64))
    _, both = honest_split.honest_dice(errs, [label] * 3, [brain] * 3, [0], [1, 2])
    assert both == pytest.approx((score + (0.0 if theta >= 1.5 else 1.0)) / 2)


def test_honest_split_smoke(tmp_path, capsys):
    _tiny_study(tmp_path)
    honest_split.main(["--model", str(tmp_path / "model.pt"), "--preproc", str(tmp_path), "--subjects", "a", "b", "v",
                       "--experiment", "im3d_flair_seg", "--per-size", "1", "--draws", "3", "--val", "v"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("im3d_flair_seg: iterative-mask Dice a:") and "(size 0)" in out[0]
    assert out[1].startswith("fixed validation set v: theta ")
    assert out[2].startswith("1 per size (3 draws): honest Dice of the others mean ")
