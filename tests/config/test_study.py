"""Configuration validation: schema messages name the key; semantic checks name the problem."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from itermask.config.datasets import bids_pattern, glob_subjects
from itermask.config.experiment_settings import deep_merge
from itermask.config.study import Study, load_config
from itermask.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


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


def test_dae_network_keys_are_checked(demo_config):
    demo_config["experiments"]["dae_flair"]["network"]["noise_sgima"] = 2.0  # a typo is refused
    with pytest.raises(ConfigError, match=r"noise_sgima"):
        Study(demo_config, base_dir=ROOT)
    del demo_config["experiments"]["dae_flair"]["network"]["noise_sgima"]
    demo_config["experiments"]["ae_flair"]["network"]["noise_sigma"] = 2.0  # a DAE key on the AE
    with pytest.raises(ConfigError, match=r"noise_sigma"):
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


def _ext_dataset(tmp_path, **entry):
    (tmp_path / "sub-a1_FLAIR.nii.gz").write_bytes(b"")
    return {"pattern": str(tmp_path / "sub-{subject}_{sequence}.nii.gz"), "sequences": ["FLAIR"],
            "brain_mask": {"method": "stripped"}, "role": "test_healthy", **entry}


def test_brain_mask_defaults_to_deepbet(demo_config, tmp_path):
    """METHOD.md §1.2: deepbet unless the dataset says otherwise."""
    entry = _ext_dataset(tmp_path)
    del entry["brain_mask"]
    demo_config["datasets"]["ext"] = entry
    d = Study(demo_config, base_dir=ROOT).datasets["ext"]
    assert d.mask_method == "deepbet" and demo_config["datasets"]["ext"]["brain_mask"] == {"method": "deepbet"}


def test_glob_role_finds_subjects(demo_config, tmp_path):
    for s in ("b2", "a1"):
        (tmp_path / f"sub-{s}_FLAIR.nii.gz").write_bytes(b"")
    demo_config["datasets"]["ext"] = _ext_dataset(tmp_path)
    study = Study(demo_config, base_dir=ROOT)
    assert study.datasets["ext"].splits == {"test_healthy": ("a1", "b2")}


def test_glob_role_names_files_with_invalid_subject_ids(demo_config, tmp_path):
    """A globbed ID with '_' or '-' is an error naming it, never a subject silently left out."""
    for s in ("p003", "patient_001", "patient-002"):
        (tmp_path / f"{s}.nii.gz").write_bytes(b"")
    demo_config["datasets"]["ext"] = _ext_dataset(tmp_path, pattern=str(tmp_path / "{subject}.nii.gz"))
    with pytest.raises(ConfigError, match=r"dataset 'ext': role 'test_healthy': pattern .* matches files whose "
                                          r"subject ID is invalid \('patient-002', 'patient_001', 'sub-a1_FLAIR'\)"):
        Study(demo_config, base_dir=ROOT)


def test_split_file_and_missing_split_file(demo_config, tmp_path):
    f = tmp_path / "train.txt"
    f.write_bytes("\ufeff# comment\r\nd01  # first\r\n  # indented comment\nd02\t\n\n".encode("utf-8"))
    demo_config["datasets"]["demo"]["splits"]["train"] = str(f)
    assert Study(demo_config, base_dir=ROOT).datasets["demo"].splits["train"] == ("d01", "d02")
    demo_config["datasets"]["demo"]["splits"]["train"] = "nope.txt"
    with pytest.raises(ConfigError, match=r"split 'train' file 'nope.txt' does not exist \(looked for "
                                          + str(ROOT.resolve() / "nope.txt").replace(".", r"\.")):
        Study(demo_config, base_dir=ROOT)
    demo_config["datasets"]["demo"]["splits"]["train"] = str(tmp_path)
    with pytest.raises(ConfigError, match=r"split 'train' file '.*' is a folder, not a file"):
        Study(demo_config, base_dir=ROOT)
    f.write_text("d01\nd02\nd01\n")
    demo_config["datasets"]["demo"]["splits"]["train"] = str(f)
    with pytest.raises(ConfigError, match=r"split 'train' file '.*train.txt' lists subject ID\(s\) 'd01' twice"):
        Study(demo_config, base_dir=ROOT)


@pytest.mark.parametrize("entry, message", [
    ({"sequence_names": {"Flair": "flair"}}, r"sequence_names key\(s\) \['Flair'\] are not among its sequences"),
    ({"sequences": ["FLAIR", "FLAIR"]}, r"sequences lists \['FLAIR'\] more than once"),
    ({"pattern": "x/sub-{subj}_{sequence}.nii.gz"}, r"pattern 'x/sub-\{subj\}.*' has placeholder\(s\) \{subj\}"),
    ({"label_pattern": "x/sub-{subject}_{sequence}_label.nii.gz"},
     r"label_pattern .* has placeholder\(s\) \{sequence\}; only \{subject\} can be filled"),
    ({"brain_mask": {"method": "pattern", "pattern": "x/mask.nii.gz"}},
     r"brain_mask.pattern 'x/mask.nii.gz' must contain '\{subject\}'"),
    ({"brain_mask": {"method": "stripped", "pattern": "x/{subject}_mask.nii.gz"}},
     r"brain_mask.pattern is only read with brain_mask.method 'pattern' \(method is 'stripped'\)"),
    ({"splits": {"test_healthy": ["a1"]}}, r"give 'splits' or 'role', not both"),
])
def test_dataset_entry_mistakes_name_dataset_and_key(demo_config, tmp_path, entry, message):
    """Each mistake in a user's dataset entry fails at parse time, naming the dataset and the key."""
    demo_config["datasets"]["ext"] = _ext_dataset(tmp_path, **entry)
    with pytest.raises(ConfigError, match=r"dataset 'ext': " + message):
        Study(demo_config, base_dir=ROOT)


@pytest.mark.parametrize("split", ["val_lesion", "test_lesion"])
def test_lesion_splits_need_labels(demo_config, split):
    splits = demo_config["datasets"]["demo"]["splits"]
    for other in {"val_lesion", "test_lesion"} - {split}:
        del splits[other]
    no_pattern = copy.deepcopy(demo_config)
    del no_pattern["datasets"]["demo"]["label_pattern"]
    with pytest.raises(ConfigError, match=f"split '{split}' need a 'label_pattern'"):
        Study(no_pattern, base_dir=ROOT)
    demo_config["datasets"]["demo"]["labelled_splits"] = ["train"]
    with pytest.raises(ConfigError, match=f"split '{split}' must be in labelled_splits"):
        Study(demo_config, base_dir=ROOT)


def test_val_lesion_subjects_are_segmented_and_labelled(demo_config):
    study = Study(demo_config, base_dir=ROOT)
    demo = study.datasets["demo"]
    first = demo.splits["val_lesion"][0]
    assert demo.label(first) == f"data/demo/sub-{first}/anat/sub-{first}_label-lesion_mask.nii.gz"
    assert study.conditions("im3d_flair_seg", "demo", first) == ["val_lesion"]
    assert study.conditions("im3d_flair", "demo", first) == []  # detection only: not run


def test_labelled_honest_source_needs_val_lesion(demo_config):
    del demo_config["datasets"]["demo"]["splits"]["val_lesion"]
    demo_config["evaluation"]["honest_source"] = "labelled_val"
    with pytest.raises(ConfigError, match="honest_source.*dataset 'demo'.*has none"):
        Study(demo_config, base_dir=ROOT)
    demo_config["evaluation"]["honest_source"] = "healthy_fpr"
    Study(demo_config, base_dir=ROOT)


def test_experiment_references(demo_config):
    cfg = copy.deepcopy(demo_config)
    cfg["experiments"]["im3d_flair"]["sequence"] = "PDw"
    with pytest.raises(ConfigError, match=r"experiments\.im3d_flair\.sequence': 'PDw' is not a sequence of dataset 'demo'"):
        Study(cfg, base_dir=ROOT)
    cfg = copy.deepcopy(demo_config)
    cfg["tables"][0]["rows"].append({"label": "Nope", "experiment": "nope"})
    with pytest.raises(ConfigError, match="'nope' is not an experiment"):
        Study(cfg, base_dir=ROOT)


def test_experiment_settings_merge_defaults(demo_config):
    study = Study(demo_config, base_dir=ROOT)
    exp = study.settings("im3d_flair_fixedtau")
    assert exp.infer["threshold"] == "fixed"
    assert exp.infer["gamma"] == demo_config["method_defaults"]["itermask3d"]["infer"]["gamma"]
    assert exp.model_owner == "im3d_flair" and exp.seed == 0 and exp.detect == ("demo",)
    assert study.model_experiment("im3d_flair_fixedtau") == "im3d_flair"
    itermask_models = [e for e in study.trained_experiments() if study.settings(e).method.startswith("itermask")]
    assert itermask_models == ["im2_flair", "im3d_flair", "im3d_flair_nofreq", "im3d_flair_seg"]


def test_conditions_per_split(demo_config):
    study = Study(demo_config, base_dir=ROOT)
    n_art = len(demo_config["artefacts"]["types"]) + sum(
        len(s["values"]) for s in demo_config["artefacts"]["severity"].values()
    )
    assert study.conditions("im3d_flair", "demo", "d07") == ["val"]
    assert study.conditions("im3d_flair_seg", "demo", "d11") == ["lesion"] and study.conditions("im3d_flair", "demo", "d11") == []
    healthy = study.conditions("im3d_flair", "demo", "d09")
    assert healthy[0] == "healthy" and len(healthy) == 1 + n_art
    assert "ghosting-s2" in healthy
    assert study.conditions("im3d_flair_nofreq", "demo", "d09") == []  # detect: false
    assert study.conditions("im3d_flair", "demo", "d01") == []  # training subject
    kind, params = study.artefact_params("ghosting-s0")
    assert kind == "ghosting" and params["intensity"] == 0.5 and params["num_ghosts"] == 4


def test_bids_pattern_and_deep_merge():
    assert (
        bids_pattern({"root": "/d/", "session": "01", "acquisition": "fast", "datatype": "anat"})
        == "/d/sub-{subject}/ses-01/anat/sub-{subject}_ses-01_acq-fast_{sequence}.nii.gz"
    )
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_glob_subjects_anchors_whole_path(tmp_path):
    (tmp_path / "sub-01_T1w.nii.gz").write_bytes(b"")
    (tmp_path / "sub-01_T1w.nii.gz.bak").write_bytes(b"")
    assert glob_subjects(str(tmp_path / "sub-{subject}_{sequence}.nii.gz"), "T1w") == (["01"], [])


def test_glob_subjects_with_the_subject_twice_in_the_pattern(tmp_path):
    """BIDS-style patterns name the subject in the folder and the file: both must agree."""
    for folder, name in [("01", "01"), ("02", "02"), ("03", "99")]:
        (tmp_path / f"sub-{folder}" / "anat").mkdir(parents=True)
        (tmp_path / f"sub-{folder}" / "anat" / f"sub-{name}_T1w.nii.gz").write_bytes(b"")
    pattern = str(tmp_path / "sub-{subject}" / "anat" / "sub-{subject}_{sequence}.nii.gz")
    assert glob_subjects(pattern, "T1w") == (["01", "02"], [])
    assert glob_subjects(pattern, "FLAIR") == ([], [])


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
    from itermask.config.sweeps import sweep_name, sweep_value_token

    assert [sweep_value_token(v) for v in (60, 60.0, 0.05, 0.1, 2.5, 1e-5, 100)] == [
        "60", "60", "0p05", "0p1", "2p5", "0p00001", "100"]
    assert sweep_name("im2_flair", "tau_percentile", 60) == "im2_flair__tau_percentile_60"
    with pytest.raises(ConfigError, match="non-negative"):
        sweep_value_token(-1)


def test_sweeps_expand_into_derived_experiments(demo_config):
    cfg = copy.deepcopy(demo_config)
    cfg["experiments"]["im3d_flair"]["infer"] = {"gamma": 0.05}
    cfg["experiments"]["im3d_flair"]["segment"] = True  # sweeps compare segmentation
    cfg["sweeps"] = [
        {"experiment": "im2_flair", "param": "tau_percentile", "values": [60, 80, 90]},
        {"experiment": "im2_flair", "param": "hf_radius", "values": [5, 15]},
        {"experiment": "im3d_flair_seg_fixed", "param": "gamma", "values": [0.02, 0.1]},
        {"experiment": "im3d_flair", "param": "hf_radius", "values": [10]},
    ]
    study = Study(cfg, base_dir=ROOT)
    derived = [e for e in study.experiments if e not in cfg["experiments"]]
    assert derived == ["im2_flair__tau_percentile_60", "im2_flair__tau_percentile_90", "im2_flair__hf_radius_15",
                       "im2_flair__hf_radius_5", "im3d_flair_seg_fixed__gamma_0p02", "im3d_flair_seg_fixed__gamma_0p1",
                       "im3d_flair__hf_radius_15", "im3d_flair__hf_radius_10"]
    # the base's own value (tau 80 from method_defaults, r 15 from preprocess) is the base point
    assert study.sweep_members("im2_flair", "tau_percentile") == {
        "im2_flair": 80.0, "im2_flair__tau_percentile_60": 60.0, "im2_flair__tau_percentile_90": 90.0}
    # hf_radius sweeps run the single-step (-spatial) model (Fig. 3), the base radius on the base's model
    assert study.sweep_members("im2_flair", "hf_radius") == {"im2_flair__hf_radius_15": 15.0,
                                                             "im2_flair__hf_radius_5": 5.0}
    assert study.settings("im2_flair__hf_radius_15").variant == "no_spatial"
    assert study.model_experiment("im2_flair__hf_radius_15") == "im2_flair"
    # the fixed-tau run carries the gamma of the run it is compared with (METHOD.md §6)
    assert study.sweep_members("im3d_flair_seg_fixed", "gamma")["im3d_flair_seg_fixed"] == \
        study.settings("im3d_flair_seg").infer["gamma"]
    # tau / gamma: same model, only infer differs; detection is not run
    tau60 = study.settings("im2_flair__tau_percentile_60")
    assert study.model_experiment("im2_flair__tau_percentile_60") == "im2_flair" == tau60.model_owner
    assert tau60.infer["tau_percentile"] == 60 and tau60.infer["first_step_percentile"] == 40
    assert tau60.detect == () and tau60.segment == ("demo",) and tau60.sequence == "FLAIR"
    assert tau60.infer["oracle_tau_factors"] == () != study.settings("im2_flair").infer["oracle_tau_factors"]
    g = study.settings("im3d_flair_seg_fixed__gamma_0p1")
    assert g.infer["gamma"] == 0.1 and g.infer["threshold"] == "fixed"
    assert study.model_experiment("im3d_flair_seg_fixed__gamma_0p1") == "im3d_flair_seg"
    # hf_radius: a model of its own at that radius
    r5 = study.settings("im2_flair__hf_radius_5")
    assert study.model_experiment("im2_flair__hf_radius_5") == "im2_flair__hf_radius_5" == r5.model_owner
    assert r5.hf_radius == 5 and study.settings("im2_flair").hf_radius == 15 and r5.variant == "no_spatial"
    assert study.settings("im3d_flair__hf_radius_10").infer["gamma"] == 0.05
    assert study.settings("im3d_flair__hf_radius_10").hf_radius == 10
    assert "hf_radius" not in study.experiments["im2_flair"]  # configured experiments unchanged
    assert [e for e in study.trained_experiments() if study.settings(e).method.startswith("itermask")] == [
        "im2_flair", "im2_flair__hf_radius_5", "im3d_flair", "im3d_flair__hf_radius_10", "im3d_flair_nofreq",
        "im3d_flair_seg"]
    assert study.conditions("im2_flair__tau_percentile_60", "demo", "d09") == []  # no detection (healthy test)
    assert study.conditions("im2_flair__tau_percentile_60", "demo", "d11") == ["lesion"]
    assert study.conditions("im2_flair__tau_percentile_60", "demo", "d07") == ["val"]
    assert ("demo", "d11") in study.inference_subjects("im2_flair__tau_percentile_60")


def test_hf_radius_sweep_of_a_shared_model_trains_like_its_owner(demo_config):
    cfg = copy.deepcopy(demo_config)
    cfg["experiments"]["im3d_flair_seg"]["train"] = {"steps": 7}
    cfg["sweeps"] = [{"experiment": "im3d_flair_nospatial", "param": "hf_radius", "values": [9]}]
    study = Study(cfg, base_dir=ROOT)
    entry = study.experiments["im3d_flair_nospatial__hf_radius_9"]
    assert "model_from" not in entry and entry["train"] == {"steps": 7} and entry["variant"] == "no_spatial"


def test_a_sweep_member_on_its_bases_model_has_the_bases_network_and_training(demo_config):
    cfg = copy.deepcopy(demo_config)
    cfg["experiments"]["im2_flair"]["train"] = {"steps": 7}
    cfg["experiments"]["im2_flair"]["network"] = {"dropout": 0.3}
    cfg["sweeps"] = [{"experiment": "im2_flair", "param": "tau_percentile", "values": [60]}]
    study = Study(cfg, base_dir=ROOT)
    name = "im2_flair__tau_percentile_60"
    entry = study.experiments[name]
    assert entry["model_from"] == "im2_flair" and "train" not in entry and "network" not in entry
    member, base = study.settings(name), study.settings("im2_flair")
    assert (member.train, member.network) == (base.train, base.network) and member.train.steps == 7


def test_sweep_errors(demo_config):
    def fails(sweep, match, **exp_changes):
        cfg = copy.deepcopy(demo_config)
        cfg["experiments"]["im3d_flair"]["segment"] = True
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
    # an experiment on a shared model takes its radius; one that names another radius is refused
    assert "hf_radius" not in demo_config["experiments"]["im3d_flair_nospatial"]
    assert Study(copy.deepcopy(demo_config), base_dir=ROOT).settings("im3d_flair_nospatial").hf_radius == \
        demo_config["experiments"]["im3d_flair_seg"]["hf_radius"] == 6
    cfg = copy.deepcopy(demo_config)
    cfg["experiments"]["im3d_flair_nospatial"]["hf_radius"] = 9
    with pytest.raises(ConfigError, match=r"im3d_flair_nospatial\.hf_radius': 9 differs .*'im3d_flair_seg' \(6\)"):
        Study(cfg, base_dir=ROOT)


def test_attention_resolutions_must_be_unet_levels(demo_config):
    demo_config["method_defaults"]["itermask2"]["network"]["attention_res"] = [16]
    with pytest.raises(ConfigError, match=r"attention_res': \[16\] px are not UNet resolutions \[48, 24, 12, 6, 3\]"):
        Study(demo_config, base_dir=ROOT)


# -- schema defaults ---------------------------------------------------------------------
# Optional keys without a default, each because its absence means something of its own.
NO_DEFAULT = {
    "properties.demo": "absent: no generated dataset",
    "properties.datasets.additionalProperties.properties.pattern": "pattern or bids",
    "properties.datasets.additionalProperties.properties.bids": "pattern or bids",
    "properties.datasets.additionalProperties.properties.bids.properties.session": "absent: no ses- entity",
    "properties.datasets.additionalProperties.properties.bids.properties.acquisition": "absent: no acq- entity",
    "properties.datasets.additionalProperties.properties.bids.properties.run": "absent: no run- entity",
    "properties.datasets.additionalProperties.properties.label_pattern": "absent: no labels",
    "properties.datasets.additionalProperties.properties.brain_mask.properties.sequence": "the first sequence",
    "properties.datasets.additionalProperties.properties.brain_mask.properties.pattern": "method pattern only",
    "properties.datasets.additionalProperties.properties.role": "role or splits",
    "properties.datasets.additionalProperties.properties.splits": "role or splits",
    "properties.datasets.additionalProperties.properties.splits.properties.train": "a split may be empty",
    "properties.datasets.additionalProperties.properties.splits.properties.val": "a split may be empty",
    "properties.datasets.additionalProperties.properties.splits.properties.val_lesion": "a split may be empty",
    "properties.datasets.additionalProperties.properties.splits.properties.test_healthy": "a split may be empty",
    "properties.datasets.additionalProperties.properties.splits.properties.test_lesion": "a split may be empty",
    "properties.datasets.additionalProperties.properties.splits.properties.test_anomalous": "a split may be empty",
    "properties.datasets.additionalProperties.properties.anomaly": "absent: no test_anomalous split",
    "properties.datasets.additionalProperties.properties.failed_skullstrip_set.properties.subjects":
        "absent: every test_healthy subject",
    "properties.experiments.additionalProperties.properties.model_from": "absent: trains its own model",
    "properties.experiments.additionalProperties.properties.network": "partial, over method_defaults",
    "properties.experiments.additionalProperties.properties.train": "partial, over method_defaults",
    "properties.experiments.additionalProperties.properties.infer": "partial, over method_defaults",
    "properties.experiments.additionalProperties.properties.label": "absent: the experiment's name",
    "properties.experiments.additionalProperties.properties.hf_radius": "absent: the preprocessing radius",
    "properties.artefacts.properties.other_sequence": "only with the other_sequence type",
}
# Type definitions that experiments use partially (each method's defaults are in <method>_*).
PARTIAL_DEFINITIONS = ("definitions.train", "definitions.infer", "definitions.network")


def _optional_without_default(node, where=""):
    if not isinstance(node, dict):
        return
    if where.startswith(PARTIAL_DEFINITIONS):
        return
    for name, sub in node.get("properties", {}).items():
        key = f"{where}.properties.{name}".lstrip(".")
        if name not in node.get("required", ()) and "default" not in sub and key not in NO_DEFAULT:
            yield key
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _optional_without_default(v, f"{where}.{k}".lstrip("."))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                yield from _optional_without_default(item, f"{where}.{k}.{i}".lstrip("."))


def test_every_optional_schema_setting_has_a_default():
    from itermask.config.schema import load_schema

    schema = load_schema()
    assert list(_optional_without_default(schema)) == []

    def no_default_in_branches(node, inside=False):
        if isinstance(node, dict):
            assert not (inside and "default" in node), node
            for k, v in node.items():
                no_default_in_branches(v, inside or k in ("oneOf", "anyOf"))
        elif isinstance(node, list):
            for v in node:
                no_default_in_branches(v, inside)

    no_default_in_branches(schema)


def test_validation_fills_defaults_of_a_minimal_config():
    from itermask.config.schema import validate_schema

    cfg = validate_schema({"results_dir": "r", "preprocess": {"spacing_mm": 1.0, "box": [16, 16, 16]},
                           "datasets": {"d": {"pattern": "x/{subject}.nii.gz", "sequences": ["T1w"],
                                              "brain_mask": {"method": "stripped"}, "splits": {"train": ["a"], "val": ["b"]}}},
                           "experiments": {"e": {"method": "itermask2", "dataset": "d", "sequence": "T1w"}}})
    assert cfg["seed"] == 0 and cfg["device"] == "auto"
    assert cfg["resources"] == {"gpu": 1, "threads": 2, "train_runtime": 240, "train_mem_mb": 16000,
                                "infer_runtime": 60, "infer_mem_mb": 12000, "infer_subjects_per_job": 1,
                                "preprocess_subjects_per_job": 1, "channels_last": True}
    assert cfg["preprocess"] == {"spacing_mm": 1.0, "box": [16, 16, 16], "zscore_repeats": 4, "zscore_clip_sd": 3.0,
                                 "background": "min", "hf_radius": 15,
                                 "slices2d": {"size": 128, "field_of_view_mm": 240, "train_range_fraction": [0.4635, 0.5677], "hf_radius": 15}}
    assert cfg["evaluation"] == {"protocols": ["honest", "paper", "per_image_best"], "honest_source": "healthy_fpr",
                                 "honest_fpr": 0.01,
                                 "size_bins": [200, 800]}
    assert cfg["datasets"]["d"]["failed_skullstrip_set"] == {"enabled": False, "n_subjects": 20, "hd_bet_mode": "accurate",
                                                             "hd_bet_tta": True, "template_spacing_mm": 3.0}
    assert cfg["datasets"]["d"]["labelled_splits"] == ["val_lesion", "test_lesion"]
    assert cfg["experiments"]["e"] == {"method": "itermask2", "dataset": "d", "sequence": "T1w",
                                       "variant": "full", "detect": False, "detect_artefacts": None, "segment": True}
    md = cfg["method_defaults"]
    assert md["itermask3d"]["train"] == {
        "steps": None, "epochs": None, "batch_size": 2, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0,
        "lr_drop_at": 0.6, "lr_after_drop": 1e-4, "rot90_p": 0.1, "rot90_axes": [0, 2], "fixed_masks": False,
        "checkpoint_every": 50, "ema": None, "ema_warmup": True}
    assert md["itermask2"]["train"] == {
        "steps": None, "epochs": None, "batch_size": 32, "optimizer": "adamw", "lr": 1e-4, "weight_decay": 0,
        "lr_drop_at": None, "lr_after_drop": None, "rot90_p": 0, "rot90_axes": [0, 1], "fixed_masks": False,
        "checkpoint_every": 1000, "ema": 0.9999, "ema_warmup": True}
    assert md["itermask3d"]["infer"] == {
        "step_percent": 1, "fine_from_percent": None, "gamma": 0.01, "y_limit": 10.0, "r2_min": 0.85, "k_fallback": "first",
        "curve_scale_percent": None, "threshold": "subject", "fixed_tau": None, "fixed_phase_a": True, "phase_b_noise": "fixed", "phase_b_start": "brain", "tau_percentile": 80, "tol": 0.01, "max_iterations": 30,
        "batch_size": 1, "score": "mask_size", "oracle_tau_factors": []}
    assert md["itermask2"]["infer"] == {"threshold": "fixed", "step_percent": 1, "fine_from_percent": None, "gamma": 0.01, "y_limit": 10.0,
                                        "r2_min": 0.85, "k_fallback": "first", "curve_scale_percent": None,
                                        "tau_percentile": 80, "first_step_percentile": 40, "tol": 0.01,
                                        "max_iterations": 30, "batch_size": 64, "score": "mask_size",
                                        "oracle_tau_factors": [0.5, 0.75, 1.0, 1.5, 2.0, 3.0],
                                        "oracle_first_step_percentiles": [10, 20, 30, 40, 50, 60], "lesion_input": "slices"}
    assert md["itermask3d"]["network"] == {"channels": [16, 32, 64, 128, 256], "dropout": 0.2, "residual": "avgpool",
                                             "input_skip": False}
    assert md["itermask2"]["network"] == {"channels": [32, 32, 64, 96, 128], "attention_res": [32, 16, 8],
                                          "dropout": 0.1, "num_res_blocks": 2, "num_heads": 1,
                                          "middle_attention": True}
    assert cfg["artefacts"] == {"types": [], "params": {}, "severity": {}}
    assert cfg["sweeps"] == [] and cfg["tables"] == []
    with pytest.raises(ConfigError, match="exactly one of 'steps' and 'epochs'"):
        Study(cfg, base_dir=ROOT)  # neither steps nor epochs
    cfg["experiments"]["e"]["train"] = {"steps": 10}
    assert Study(cfg, base_dir=ROOT).settings("e").train.steps == 10


def test_filled_demo_config_keeps_todays_effective_settings(demo_config):
    """The demo's settings after filling: the config's own values, today's defaults elsewhere."""
    study = Study(demo_config, base_dir=ROOT)
    im3d, im2 = study.settings("im3d_flair"), study.settings("im2_flair")
    assert (im3d.hf_radius, im2.hf_radius, im3d.seed) == (15, 15, 0)
    assert im3d.train.steps == 150 and im3d.train.checkpoint_every == 25 and im3d.train.rot90_axes == (0, 2)
    assert im3d.train.optimizer == "adam" and im3d.train.ema is None and im3d.train.ema_warmup is True
    assert im2.train.optimizer == "adamw" and im2.train.ema == 0.999 and im2.train.lr_drop_at is None
    assert im2.train.rot90_p == 0 and im2.train.rot90_axes == (0, 1)
    assert dict(im3d.infer) == {"step_percent": 5, "fine_from_percent": None, "gamma": 0.01, "y_limit": 10.0, "r2_min": 0.85,
                                "k_fallback": "first", "curve_scale_percent": None, "threshold": "subject", "fixed_tau": None, "fixed_phase_a": True, "phase_b_noise": "fixed", "phase_b_start": "brain",
                                "tau_percentile": 80, "tol": 0.01, "max_iterations": 20,
                                "batch_size": 4, "score": "mask_size", "oracle_tau_factors": ()}
    assert dict(im2.infer)["tau_percentile"] == 80 and im2.infer["batch_size"] == 64
    seg, nofreq = study.settings("im3d_flair_seg").infer, study.settings("im3d_flair_nofreq").infer
    assert (seg["gamma"], seg["y_limit"], seg["curve_scale_percent"], seg["fine_from_percent"]) == (10, 50, 50, 90)
    assert dict(nofreq) == dict(seg)  # Table 5's -freq row runs the same rule
    assert im3d.network["residual"] == "avgpool" and im2.network["num_heads"] == 1
    assert im2.network["middle_attention"] is True and im2.network["num_res_blocks"] == 1
    assert study.evaluation.protocols == ("honest", "paper", "per_image_best")
    assert study.evaluation.size_bins == (44, 176) and study.evaluation.honest_fpr == 0.01
    assert study.resources.threads == 1 and study.resources.gpu == 1 and study.resources.train_runtime == 240
    assert study.demo.voxel_size_mm == 2.0 and study.demo.lesion_volumes_ml == (0.5, 4.0, 15.0, 60.0)
    assert study.preprocess.slices2d.size == 48 and study.preprocess.background == "min"
    assert study.failed_skullstrip("demo").enabled is True  # the demo builds the failed-strip set (issue 10)
    assert study.settings("im3d_flair_fixedtau").to_dict() == (
        type(im3d).from_dict(study.settings("im3d_flair_fixedtau").to_dict()).to_dict())


@pytest.mark.parametrize("device, strip, strip_gpus, torch_gpus", [
    ("cuda", "cuda", 1, 1),  # strips on CUDA: its jobs ask for the GPU too
    ("auto", "cpu", 0, 1),   # masks must not depend on which node a job lands on
    ("cpu", "cpu", 0, 0),    # nothing asks a cluster for a GPU it will not use
])
def test_skull_strippers_and_torch_jobs_request_gpus_by_device(demo_config, device, strip, strip_gpus, torch_gpus):
    cfg = copy.deepcopy(demo_config)
    cfg["device"], cfg["resources"] = device, {**cfg["resources"], "gpu": 1}
    study = Study(cfg)
    assert (study.skullstrip_device, study.skullstrip_gpus, study.torch_gpus) == (strip, strip_gpus, torch_gpus)


def test_empty_val_split_fails_at_parse_time_for_methods_that_need_it(demo_config):
    """`val: []` is refused while the config is read, not after preprocessing, naming the experiment."""
    demo_config["datasets"]["demo"]["splits"]["val"] = []
    with pytest.raises(ConfigError, match=r"config key 'experiments.im3d_flair': method 'itermask3d' with these "
                                          r"settings needs healthy validation subjects, but dataset 'demo' has an "
                                          r"empty or no 'val' split"):
        Study(demo_config, base_dir=ROOT)


def test_training_settings_leave_out_what_does_not_change_the_model(demo_config):
    """Rule train's params: a table label, the test sets or an inference-only key (gamma) leave
    them unchanged (no retraining); a training key or a key the calibration reads changes them."""
    def view(cfg):
        return Study(cfg, base_dir=ROOT).training_settings("im3d_flair_seg").to_dict()

    base = view(copy.deepcopy(demo_config))
    assert base["infer"] == {"tau_percentile": 80, "batch_size": 4} and base["detect"] == []
    changed = copy.deepcopy(demo_config)
    exp = changed["experiments"]["im3d_flair_seg"]
    exp["label"], exp["infer"] = "renamed", {**exp["infer"], "gamma": 9.0}
    exp["segment"] = False
    exp["detect"] = True
    assert view(changed) == base
    for section, key, value in (("train", "steps", 451), ("infer", "tau_percentile", 70)):
        changed = copy.deepcopy(demo_config)
        exp = changed["experiments"]["im3d_flair_seg"]
        exp[section] = {**exp[section], key: value}
        assert view(changed) != base, key
    ae = Study(copy.deepcopy(demo_config), base_dir=ROOT).training_settings("ae_flair")
    assert dict(ae.infer) == dict(Study(demo_config, base_dir=ROOT).settings("ae_flair").infer)  # None: every key


def test_inference_settings_leave_out_the_table_label_and_the_test_sets(demo_config):
    """Rule infer's params (settings.for_inference): renaming a row or adding a test set reruns no
    inference; an inference key does."""
    def view(cfg):
        return Study(cfg, base_dir=ROOT).settings("im3d_flair_seg").for_inference().to_dict()

    base = view(copy.deepcopy(demo_config))
    assert base["label"] == "" and base["detect"] == [] and base["segment"] == []
    changed = copy.deepcopy(demo_config)
    exp = changed["experiments"]["im3d_flair_seg"]
    exp["label"], exp["detect"] = "renamed", True
    assert view(changed) == base
    exp["infer"] = {**exp["infer"], "gamma": 9.0}
    assert view(changed)["infer"]["gamma"] == 9.0 and view(changed) != base


def test_a_mistyped_name_says_which_names_the_config_declares(demo_config):
    import pickle

    from itermask.errors import ConfigError, UnknownName

    study = Study(demo_config, base_dir=ROOT)
    with pytest.raises(ConfigError, match=r"unknown dataset 'dmeo': config 'datasets' declares or derives demo, demofailedstrip$"):
        study.datasets["dmeo"]
    with pytest.raises(UnknownName, match=r"unknown table 'itermask3d_tabel4': config 'tables' declares or derives .*itermask3d_table4"):
        study.tables["itermask3d_tabel4"]
    with pytest.raises(KeyError, match="unknown experiment 'im3d'"):  # still a KeyError to callers expecting one
        study.settings("im3d")
    assert study.experiments.get("im3d") is None and "demo" in study.datasets
    copied = pickle.loads(pickle.dumps(study.datasets))
    assert copied == study.datasets and copied.kind == "dataset"
    assert type(study.tables)(study.tables) == study.tables  # a generic copy keeps the items


def test_an_lpips_module_is_an_input_of_autoddpm_inference_and_calibrating_training(demo_config):
    """infer.lpips_model is read by every AutoDDPM inference job, and by its training job when
    training ends with the threshold calibration: rules infer and train list it (a missing file
    stops the run before it starts; a new one reruns them); other methods read no extra file."""
    auto = demo_config["experiments"]["autoddpm_flair"]
    study = Study(copy.deepcopy(demo_config), base_dir=ROOT)
    assert study.method_files("autoddpm_flair", "infer") == study.method_files("autoddpm_flair", "train") == []
    auto["infer"] = {**auto.get("infer", {}), "lpips_model": "models/lpips.pt"}
    study = Study(copy.deepcopy(demo_config), base_dir=ROOT)
    assert study.method_files("autoddpm_flair", "infer") == ["models/lpips.pt"]
    assert study.method_files("autoddpm_flair", "train") == []  # no calibration: training never loads it
    assert study.method_files("im3d_flair_seg", "infer") == study.method_files("im3d_flair_seg", "train") == []
    auto["infer"]["mask_threshold_val_percentile"] = 99
    auto.pop("model_from", None)  # a calibrating AutoDDPM trains its own model (test_shared_models.py) ...
    auto["train"] = demo_config["experiments"]["ddpm_flair"]["train"]  # ... as the DDPM's
    assert Study(demo_config, base_dir=ROOT).method_files("autoddpm_flair", "train") == ["models/lpips.pt"]
