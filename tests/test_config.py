"""Configuration validation: schema messages name the key; semantic checks name the problem."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from itermask.config.study import Study, bids_pattern, deep_merge, glob_subjects, load_config
from itermask.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def demo_config() -> dict:
    return load_config(ROOT / "config.yaml")


def test_shipped_configs_validate(demo_config):
    study = Study(demo_config, base_dir=ROOT)
    assert study.datasets["demo"].subjects[:2] == ["d01", "d02"]
    Study(load_config(ROOT / "tests/configs/tiny.yaml"), base_dir=ROOT)


def test_wrong_type_names_key(demo_config):
    demo_config["datasets"]["demo"]["sequences"] = "FLAIR"
    with pytest.raises(ConfigError, match=r"datasets\.demo\.sequences': expected array, got str 'FLAIR'"):
        Study(demo_config, base_dir=ROOT)


def test_unknown_key_lists_allowed(demo_config):
    demo_config["preprocess"]["spacing"] = 1.0
    with pytest.raises(ConfigError, match=r"'preprocess'.*spacing.*allowed keys: .*spacing_mm"):
        Study(demo_config, base_dir=ROOT)


def test_box_must_be_divisible_by_16(demo_config):
    demo_config["preprocess"]["box"] = [64, 64, 60]
    with pytest.raises(ConfigError, match=r"preprocess\.box\.2"):
        Study(demo_config, base_dir=ROOT)


def test_duplicate_subject_ids(demo_config):
    demo_config["datasets"]["demo"]["splits"]["val"] = ["d07", "d01"]
    with pytest.raises(ConfigError, match=r"dataset 'demo': duplicate subject ID 'd01' in splits 'train' and 'val'"):
        Study(demo_config, base_dir=ROOT)


def test_pattern_that_matches_nothing(demo_config, tmp_path):
    demo_config["datasets"]["ext"] = {
        "pattern": str(tmp_path / "sub-{subject}_{sequence}.nii.gz"),
        "sequences": ["FLAIR"],
        "brain_mask": {"method": "stripped"},
        "role": "test_healthy",
    }
    with pytest.raises(ConfigError, match=r"dataset 'ext': pattern '.*sub-\{subject\}_FLAIR.nii.gz' matches no file"):
        Study(demo_config, base_dir=ROOT)


def test_glob_role_finds_subjects(demo_config, tmp_path):
    for s in ("b2", "a1"):
        (tmp_path / f"sub-{s}_FLAIR.nii.gz").write_bytes(b"")
    (tmp_path / "sub-x_y_FLAIR.nii.gz").write_bytes(b"")  # not a valid ID: ignored
    demo_config["datasets"]["ext"] = {
        "pattern": str(tmp_path / "sub-{subject}_{sequence}.nii.gz"),
        "sequences": ["FLAIR"],
        "brain_mask": {"method": "stripped"},
        "role": "test_healthy",
    }
    study = Study(demo_config, base_dir=ROOT)
    assert study.datasets["ext"].splits == {"test_healthy": ("a1", "b2")}


def test_split_file_and_missing_split_file(demo_config, tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("# comment\nd01\nd02\n\n")
    demo_config["datasets"]["demo"]["splits"]["train"] = str(f)
    assert Study(demo_config, base_dir=ROOT).datasets["demo"].splits["train"] == ("d01", "d02")
    demo_config["datasets"]["demo"]["splits"]["train"] = str(tmp_path / "nope.txt")
    with pytest.raises(ConfigError, match=r"split 'train' file '.*nope.txt' does not exist"):
        Study(demo_config, base_dir=ROOT)


def test_lesion_split_needs_labels(demo_config):
    del demo_config["datasets"]["demo"]["label_pattern"]
    with pytest.raises(ConfigError, match="test_lesion.*label_pattern"):
        Study(demo_config, base_dir=ROOT)


def test_experiment_references(demo_config):
    cfg = copy.deepcopy(demo_config)
    cfg["experiments"]["im3d_flair"]["sequence"] = "T2w"
    with pytest.raises(ConfigError, match=r"experiments\.im3d_flair'\.sequence: 'T2w' is not a sequence of dataset 'demo'"):
        Study(cfg, base_dir=ROOT)
    cfg = copy.deepcopy(demo_config)
    cfg["tables"][0]["experiments"].append("nope")
    with pytest.raises(ConfigError, match="'nope' is not an experiment"):
        Study(cfg, base_dir=ROOT)
    cfg = copy.deepcopy(demo_config)
    del cfg["experiments"]["im3d_flair_fixedtau"]["model_from"]
    with pytest.raises(ConfigError, match="threshold 'fixed' needs fixed_tau or model_from"):
        Study(cfg, base_dir=ROOT)


def test_experiment_settings_merge_defaults(demo_config):
    study = Study(demo_config, base_dir=ROOT)
    exp = study.experiment("im3d_flair_fixedtau")
    assert exp["infer"]["threshold"] == "fixed"
    assert exp["infer"]["gamma"] == demo_config["method_defaults"]["itermask3d"]["infer"]["gamma"]
    assert study.model_experiment("im3d_flair_fixedtau") == "im3d_flair"
    assert study.trained_experiments() == ["im2_flair", "im3d_flair", "im3d_flair_nofreq"]


def test_conditions_per_split(demo_config):
    study = Study(demo_config, base_dir=ROOT)
    n_art = len(demo_config["artefacts"]["types"]) + sum(
        len(s["values"]) for s in demo_config["artefacts"]["severity"].values()
    )
    assert study.conditions("im3d_flair", "demo", "d07") == ["val"]
    assert study.conditions("im3d_flair", "demo", "d11") == ["lesion"]
    healthy = study.conditions("im3d_flair", "demo", "d09")
    assert healthy[0] == "healthy" and len(healthy) == 1 + n_art
    assert "ghosting-s2" in healthy
    assert study.conditions("im3d_flair_nofreq", "demo", "d09") == []  # detect: false
    assert study.conditions("im3d_flair", "demo", "d01") == []  # training subject
    kind, params = study.artefact_params("ghosting-s0")
    assert kind == "ghosting" and params["intensity"] == 0.5 and params["num_ghosts"] == 4


def test_bids_pattern_and_deep_merge():
    assert (
        bids_pattern({"root": "/d/", "session": "01", "acquisition": "fast"})
        == "/d/sub-{subject}/ses-01/anat/sub-{subject}_ses-01_acq-fast_{sequence}.nii.gz"
    )
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_glob_subjects_anchors_whole_path(tmp_path):
    (tmp_path / "sub-01_T1w.nii.gz").write_bytes(b"")
    (tmp_path / "sub-01_T1w.nii.gz.bak").write_bytes(b"")
    assert glob_subjects(str(tmp_path / "sub-{subject}_{sequence}.nii.gz"), "T1w") == ["01"]


def test_glob_subjects_with_the_subject_twice_in_the_pattern(tmp_path):
    """BIDS-style patterns name the subject in the folder and the file: both must agree."""
    for folder, name in [("01", "01"), ("02", "02"), ("03", "99")]:
        (tmp_path / f"sub-{folder}" / "anat").mkdir(parents=True)
        (tmp_path / f"sub-{folder}" / "anat" / f"sub-{name}_T1w.nii.gz").write_bytes(b"")
    pattern = str(tmp_path / "sub-{subject}" / "anat" / "sub-{subject}_{sequence}.nii.gz")
    assert glob_subjects(pattern, "T1w") == ["01", "02"]
    assert glob_subjects(pattern, "FLAIR") == []


def test_role_dataset_globs_a_bids_style_pattern(tmp_path, demo_config):
    for sid in ("h01", "h02"):
        (tmp_path / f"sub-{sid}").mkdir()
        (tmp_path / f"sub-{sid}" / f"{sid}_T1w.nii.gz").write_bytes(b"")
    cfg = copy.deepcopy(demo_config)
    cfg["datasets"]["own"] = {"pattern": str(tmp_path / "sub-{subject}" / "{subject}_{sequence}.nii.gz"),
                              "sequences": ["T1w"], "brain_mask": {"method": "deepbet"}, "role": "test_healthy"}
    study = Study(cfg, base_dir=ROOT)
    assert study.datasets["own"].splits == {"test_healthy": ("h01", "h02")}


def test_sweep_value_token_and_name():
    from itermask.config.study import sweep_name, sweep_value_token

    assert [sweep_value_token(v) for v in (60, 60.0, 0.05, 0.1, 2.5, 1e-5, 100)] == [
        "60", "60", "0p05", "0p1", "2p5", "0p00001", "100"]
    assert sweep_name("im2_flair", "tau_percentile", 60) == "im2_flair__tau_percentile_60"
    with pytest.raises(ConfigError, match="non-negative"):
        sweep_value_token(-1)


def test_sweeps_expand_into_derived_experiments(demo_config):
    cfg = copy.deepcopy(demo_config)
    cfg["experiments"]["im3d_flair"]["infer"] = {"gamma": 0.05}
    cfg["sweeps"] = [
        {"experiment": "im2_flair", "param": "tau_percentile", "values": [60, 80, 90]},
        {"experiment": "im2_flair", "param": "hf_radius", "values": [5, 15]},
        {"experiment": "im3d_flair_fixedtau", "param": "gamma", "values": [0.02, 0.1]},
        {"experiment": "im3d_flair", "param": "hf_radius", "values": [10]},
    ]
    study = Study(cfg, base_dir=ROOT)
    derived = [e for e in study.experiments if e not in cfg["experiments"]]
    assert derived == ["im2_flair__tau_percentile_60", "im2_flair__tau_percentile_90", "im2_flair__hf_radius_5",
                       "im3d_flair_fixedtau__gamma_0p02", "im3d_flair_fixedtau__gamma_0p1",
                       "im3d_flair__hf_radius_10"]
    # the base's own value (tau 80 from method_defaults, r 15 from preprocess) is the base point
    assert study.sweep_members("im2_flair", "tau_percentile") == {
        "im2_flair": 80.0, "im2_flair__tau_percentile_60": 60.0, "im2_flair__tau_percentile_90": 90.0}
    assert study.sweep_members("im2_flair", "hf_radius") == {"im2_flair": 15.0, "im2_flair__hf_radius_5": 5.0}
    assert study.sweep_members("im3d_flair_fixedtau", "gamma")["im3d_flair_fixedtau"] == 0.01
    # tau / gamma: same model, only infer differs; detection is not run
    tau60 = study.experiment("im2_flair__tau_percentile_60")
    assert study.model_experiment("im2_flair__tau_percentile_60") == "im2_flair"
    assert tau60["infer"]["tau_percentile"] == 60 and tau60["infer"]["first_step_percentile"] == 40
    assert tau60["detect"] is False and tau60["segment"] is True and tau60["sequence"] == "FLAIR"
    g = study.experiment("im3d_flair_fixedtau__gamma_0p1")
    assert g["infer"]["gamma"] == 0.1 and g["infer"]["threshold"] == "fixed"
    assert study.model_experiment("im3d_flair_fixedtau__gamma_0p1") == "im3d_flair"
    # hf_radius: a model of its own at that radius
    r5 = study.experiment("im2_flair__hf_radius_5")
    assert study.model_experiment("im2_flair__hf_radius_5") == "im2_flair__hf_radius_5"
    assert r5["hf_radius"] == 5 and study.hf_radius("im2_flair__hf_radius_5") == 5
    assert study.hf_radius("im2_flair") == study.stored_hf_radius("im2_flair__hf_radius_5") == 15
    assert study.experiment("im3d_flair__hf_radius_10")["infer"]["gamma"] == 0.05
    assert "hf_radius" not in study.experiment("im2_flair")  # configured experiments unchanged
    assert study.trained_experiments() == ["im2_flair", "im2_flair__hf_radius_5", "im3d_flair",
                                           "im3d_flair__hf_radius_10", "im3d_flair_nofreq"]
    assert study.conditions("im2_flair__tau_percentile_60", "demo", "d09") == []  # no detection (healthy test)
    assert study.conditions("im2_flair__tau_percentile_60", "demo", "d11") == ["lesion"]
    assert study.conditions("im2_flair__tau_percentile_60", "demo", "d07") == ["val"]
    assert ("demo", "d11") in study.inference_subjects("im2_flair__tau_percentile_60")


def test_hf_radius_sweep_of_a_shared_model_trains_like_its_owner(demo_config):
    cfg = copy.deepcopy(demo_config)
    cfg["experiments"]["im3d_flair"]["train"] = {"steps": 7}
    cfg["sweeps"] = [{"experiment": "im3d_flair_nospatial", "param": "hf_radius", "values": [9]}]
    study = Study(cfg, base_dir=ROOT)
    entry = study.experiments["im3d_flair_nospatial__hf_radius_9"]
    assert "model_from" not in entry and entry["train"] == {"steps": 7} and entry["variant"] == "no_spatial"


def test_sweep_errors(demo_config):
    def fails(sweep, match, **exp_changes):
        cfg = copy.deepcopy(demo_config)
        for name, entry in exp_changes.items():
            cfg["experiments"][name].update(entry)
        cfg["sweeps"] = [sweep] if isinstance(sweep, dict) else sweep
        with pytest.raises(ConfigError, match=match):
            Study(cfg, base_dir=ROOT)

    fails({"experiment": "nope", "param": "gamma", "values": [0.1]}, "'nope' is not an experiment")
    fails({"experiment": "im3d_flair", "param": "tau_percentile", "values": [60]}, "setting of itermask2")
    fails({"experiment": "im2_flair", "param": "gamma", "values": [0.1]}, "setting of itermask3d")
    fails({"experiment": "im2_flair", "param": "tau_percentile", "values": [62.5]}, "integer 1..99")
    fails({"experiment": "im2_flair", "param": "tau_percentile", "values": [100]}, "integer 1..99")
    fails({"experiment": "im3d_flair", "param": "hf_radius", "values": [7.5]}, "must be an integer")
    fails({"experiment": "im3d_flair_nofreq", "param": "hf_radius", "values": [5]}, "no_freq")
    fails({"experiment": "im2_flair", "param": "tau_percentile", "values": [60, 60.0]}, "already exists")
    fails([{"experiment": "im2_flair", "param": "tau_percentile", "values": [60]}] * 2, "second sweep")
    fails({"experiment": "im2_flair", "param": "tau_percentile", "values": [60]}, "does not segment",
          im2_flair={"segment": False})
    fails({"experiment": "im2_flair", "param": "radius", "values": [60]}, r"sweeps\.0\.param")
    cfg = copy.deepcopy(demo_config)
    cfg["experiments"]["sensitivity"] = cfg["experiments"]["im2_flair"]
    with pytest.raises(ConfigError, match="reserved"):
        Study(cfg, base_dir=ROOT)
    # a model shared across HF radii is refused
    cfg = copy.deepcopy(demo_config)
    cfg["experiments"]["im3d_flair_nospatial"]["hf_radius"] = 9
    with pytest.raises(ConfigError, match=r"im3d_flair_nospatial'\.hf_radius: 9 differs .*'im3d_flair' \(15\)"):
        Study(cfg, base_dir=ROOT)


def test_attention_resolutions_must_be_unet_levels(demo_config):
    demo_config["method_defaults"]["itermask2"]["network"]["attention_res"] = [16]
    with pytest.raises(ConfigError, match=r"attention_res': \[16\] px are not UNet resolutions \[48, 24, 12, 6, 3\]"):
        Study(demo_config, base_dir=ROOT)
