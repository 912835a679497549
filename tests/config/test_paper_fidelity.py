"""Issue 10: settings of paper.yaml / the schema that follow the papers (METHOD.md §1, §2, §6)."""
from __future__ import annotations

from pathlib import Path

import pytest

from itermask.config.study import Study, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def paper() -> Study:
    return Study(load_config(ROOT / "paper.yaml"), base_dir=ROOT)


def test_atlas_tau_is_the_70th_percentile_brats_80th(paper):
    assert paper.settings("im2_atlas_t1").infer["tau_percentile"] == 70
    assert paper.settings("im2_brats_flair").infer["tau_percentile"] == 80


def test_different_sequence_anomaly_is_t2_for_the_flair_model(paper):
    assert paper.config["artefacts"]["other_sequence"] == "T2w"
    assert "T2w" in paper.datasets["adni"].sequences
    assert paper.settings("im3d_flair").sequence == "FLAIR"


def test_iterative_zscore_has_four_renormalisations_by_default(paper):
    assert paper.preprocess.zscore_repeats == 4
    demo = load_config(ROOT / "config.yaml")
    assert demo["preprocess"]["zscore_repeats"] == 4  # stated explicitly in the demo
    del demo["preprocess"]["zscore_repeats"]
    assert Study(demo, base_dir=ROOT).preprocess.zscore_repeats == 4  # the schema default


def test_detection_score_is_the_mask_voxel_count_by_default(paper):
    for name in ("im3d_flair", "im2_adni_flair"):
        assert paper.settings(name).infer["score"] == "mask_size"


def test_training_schedules_follow_the_papers_text(paper):
    """METHOD.md §5: 200 epochs (3D) and 8,000 Adam iterations of batch 32 (2D), as the IterMask3D
    paper states; each baseline trains as the IterMask row it is compared with."""
    for name in ("im3d_flair", "ae_adni_flair", "dae_adni_flair", "ae_oasis_t2"):
        t = paper.settings(paper.model_experiment(name)).train
        assert (t.epochs, t.steps, t.batch_size, t.optimizer) == (200, None, 2, "adam"), name
    for name in ("im2_brats_flair", "im2_atlas_t1", "im2_brats_flair_adaptive", "ae2d_brats_flair", "dae2d_brats_flair_pos"):
        t = paper.settings(paper.model_experiment(name)).train
        assert (t.steps, t.epochs, t.batch_size, t.optimizer) == (8000, None, 32, "adam"), name
