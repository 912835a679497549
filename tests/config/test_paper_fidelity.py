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


def test_preprocessing_grid_and_hf_radius_follow_the_reference(paper):
    """METHOD.md §1.3-1.4 and §3: 1 mm isotropic, a 192^3 box, HF radius r = 15 for the 3D
    volumes and for the 2D slices; every experiment that does not set its own radius uses 15."""
    p = paper.preprocess
    assert p.spacing_mm == 1.0
    assert tuple(p.box) == (192, 192, 192)
    assert p.hf_radius == 15 and p.slices2d.hf_radius == 15
    for name in ("im3d_flair", "im2_brats_flair", "im2_adni_flair", "ae2d_brats_flair"):
        assert paper.settings(name).hf_radius == 15, name


def test_2d_slices_are_128_px_over_a_240_mm_field(paper):
    """METHOD.md §1.7: the 240 mm x 240 mm BraTS field resized to 128 x 128 (1.875 mm pixels);
    training slices: 20 axial indices about the box centre, as the reference's 70-89 of 155."""
    from itermask.preprocess.slices2d import axial_range, field_pixels

    s = paper.preprocess.slices2d
    assert s.size == 128 and s.field_of_view_mm == 240
    assert s.field_of_view_mm / s.size == 1.875
    assert field_pixels(s.field_of_view_mm, paper.preprocess.spacing_mm) == 240
    r = axial_range(paper.preprocess.box[2], s.train_range_fraction)
    assert (r.start, r.stop) == (89, 109)  # 20 slices: the reference's 70-89 moved from BraTS's centre 77.5 to the box's 96


#: METHOD.md §2, the reference settings of the synthetic anomalies of IterMask3D Table 1
SPEC_ARTEFACTS = {
    "chunk_top": {"size": 30},
    "chunk_middle": {"size": 30, "start": 80},
    "kspace_noise": {"amplitude": 0.003, "keep_center_rows": 2},
    "spike": {"positions": [[0.45, 0.45, 0.45]], "intensity": 4.0},
    "bias_field": {"coefficients": 0.1, "order": 3},
    "ghosting": {"num_ghosts": 4, "axis": 1, "intensity": 2.0, "restore": 0.01},
    "zipper": {"columns": [60, 90, 120], "width": 5},
    "other_sequence": {},
}


def _plain(value):
    """Frozen/tuple config values as plain lists and floats for comparison."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def test_synthetic_artefacts_use_the_reference_parameters(paper):
    """paper.yaml runs the eight anomalies of Table 1 with METHOD.md §2's parameters: the values
    it writes, and the merged ones the artefacts rule receives (reference defaults + paper.yaml)."""
    from itermask.artefacts.algorithms import REFERENCE_PARAMS

    art = paper.config["artefacts"]
    assert sorted(art["types"]) == sorted(SPEC_ARTEFACTS)
    for kind, spec in SPEC_ARTEFACTS.items():
        assert _plain(REFERENCE_PARAMS[kind]) == spec, kind
        for key, value in art["params"].get(kind, {}).items():
            assert _plain(value) == spec[key], (kind, key)
        t, merged = paper.artefact_params(kind)
        assert t == kind and _plain(merged) == spec, kind
    assert art["other_sequence"] == "T2w"
