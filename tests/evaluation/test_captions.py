"""What captions state from the configuration (spec.caption_context: each row's settings from
its method's ``describe``, the anomalies' parameters, the size bins) and from the published
table (rows beyond or missing from the paper's); table_stage writes table and comparison."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from itermask.config.schema import FillingValidator, load_schema
from itermask.config.study import Study, load_config
from itermask.evaluation.evaluate import SEGMENTATION_COLUMNS
from itermask.evaluation.spec import block_settings, caption_context, row_settings
from itermask.evaluation.tables import caption, table_stage

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo() -> Study:
    return Study(load_config(ROOT / "config.yaml"), base_dir=ROOT)


def _spec(**table):
    tables = [dict(table)]
    FillingValidator(load_schema()["properties"]["tables"]).validate(tables)
    return tables[0]


def _seg_spec(rows):
    return _spec(name="t", kind="segmentation", protocol="paper", metrics=["dice", "dice_small"],
                 blocks=[{"key": "b", "dataset": "demo"}], rows=rows)


def test_row_settings_come_from_each_experiments_config(demo):
    spec = _seg_spec([{"label": "seg", "experiment": "im3d_flair_seg"},
                      {"label": "fixed", "experiment": "im3d_flair_seg_fixed"},
                      {"label": "spatial", "experiment": "im3d_flair_nospatial"},
                      {"label": "DAE", "experiment": "dae_flair"},
                      {"label": "IterMask2", "experiment": "im2_flair"},
                      {"label": "AutoDDPM", "experiment": "autoddpm_flair"},
                      {"label": "DDPM", "experiment": "ddpm_flair"},
                      {"label": "Cyclic", "experiment": "cyclic_flair"}])
    text = row_settings(spec, demo)
    seg = demo.settings("im3d_flair_seg").infer
    assert f"γ {seg['gamma']:g}" in text["seg"] and f"1 % steps from {seg['fine_from_percent']:g} %" in text["seg"]
    assert f"HF radius {demo.settings('im3d_flair_seg').hf_radius}" in text["seg"]
    assert f"or {seg['max_iterations']} iterations" in text["seg"]
    # model_from: the network of the model it runs (the segmentation model's input skip), its own threshold
    assert "full-resolution input skip" in text["fixed"] and "γ" not in text["fixed"]
    assert f"fixed τ = the {demo.settings('im3d_flair_seg_fixed').infer['tau_percentile']:g}th percentile" in text["fixed"]
    assert "no phase A" in text["fixed"]
    assert "-spatial" in text["spatial"] and "phase B" not in text["spatial"]
    assert f"σ {demo.settings('dae_flair').network['noise_sigma']:g}" in text["DAE"]
    im2 = demo.settings("im2_flair").infer
    assert f"above its {im2['first_step_percentile']:g}th error percentile" in text["IterMask2"]
    auto = demo.settings("autoddpm_flair").infer
    assert auto["lpips_model"] is None and "no LPIPS factor" in text["AutoDDPM"]
    assert f"> {auto['mask_threshold_no_lpips']:g} (configured, not set on validation data), dilated" in text["AutoDDPM"]
    assert "map |x − x_inpainted| × the mask's map" in text["AutoDDPM"]
    ddpm = demo.settings("ddpm_flair").infer
    assert f"|x − x̂| > {ddpm['mask_threshold']:g} (configured" in text["DDPM"]
    assert "noise to t 199 (4 of 20 respaced steps)" in text["DDPM"]  # noise_t 200 on the demo's 20 kept steps
    assert text["Cyclic"] == "FLAIR → T1w → FLAIR"


def test_block_settings_give_artefact_parameters_and_the_kspace_note(demo):
    spec = _spec(name="d", kind="detection", metrics=["auroc"],
                 blocks=[{"key": "k", "dataset": "demo", "anomaly": "kspace_noise"},
                         {"key": "g", "dataset": "demo", "anomaly": "ghosting-s0"},
                         {"key": "o", "dataset": "demo", "anomaly": "other_sequence"},
                         {"key": "f", "dataset": "demo", "anomaly": "failed_skullstrip"}],
                 rows=[{"label": "IterMask3D", "experiment": "im3d_flair"}])
    text = block_settings(spec, demo)
    art = demo.config["artefacts"]
    assert f"amplitude {art['params']['kspace_noise']['amplitude']}" in text["k"]
    assert "reference code's parametrisation" in text["k"]
    assert f"intensity {art['severity']['ghosting']['values'][0]}" in text["g"]  # the level's value, not the base one
    assert text["o"] == f"the subject's {art['other_sequence']} scan"
    assert "f" not in text  # a real-artefact set has no synthetic parameters


def test_caption_names_rows_beyond_and_missing_from_the_paper_and_the_size_bins():
    spec = _seg_spec([{"label": "DDPM (image space)", "published_label": "DDPM", "experiment": "x"},
                      {"label": "Ours, honest", "experiment": "x", "protocol": "honest"}])
    text = caption(spec, [], {"size_bins": [28, 112]}, paper_rows=["DDPM", "AE", "AE"])
    assert "Rows not in the paper: Ours, honest." in text
    assert "The paper's rows not run here: AE." in text
    assert "small < 28, medium 28–112, large > 112" in text
    assert "not in the paper" not in caption(spec, [], None, paper_rows=None)  # no published table: no claim


def test_caption_warns_where_a_metric_depends_on_the_intensity_units():
    """PSNR (ref) and the SSIMs differ between z-scored volumes and 2D-scaled slices; PSNR does not."""
    def text(metrics):
        return caption(_spec(name="t", kind="segmentation", protocol="paper", metrics=metrics,
                             blocks=[{"key": "b", "dataset": "demo"}], rows=[{"label": "A", "experiment": "x"}]), [])

    for metric in ("psnr_ref", "ssim", "ssim_ref"):
        assert "depend on the intensity units" in text(["dice", metric])
    assert "depend on the intensity units" not in text(["dice", "psnr", "assd_mm"])


def test_settings_caption_groups_rows_with_one_text_and_skips_grey_rows():
    from itermask.evaluation.layout import Row

    spec = _seg_spec([{"label": "A", "experiment": "x"}, {"label": "A, honest", "experiment": "x"},
                      {"label": "A best", "grey": True, "experiment": "x"}])
    rows = [Row("A", False, "paper"), Row("A, honest", False, "honest"), Row("A best", True, "per_image_best")]
    text = caption(spec, rows, {"settings": {"A": "γ 2", "A, honest": "γ 2", "A best": "γ 2"}})
    assert "Settings: A | A, honest: γ 2." in text


def test_table_stage_writes_table_and_comparison_from_the_published_csv(tmp_path, demo):
    spec = _seg_spec([{"label": "DAE (orig)", "experiment": "dae_flair"}])
    seg = tmp_path / "seg.tsv"
    row = dict.fromkeys(SEGMENTATION_COLUMNS, 0.5) | {"experiment": "dae_flair", "dataset": "demo", "subject": "s",
                                                      "protocol": "paper", "size_class": "small", "oracle": ""}
    pd.DataFrame([row], columns=SEGMENTATION_COLUMNS).to_csv(seg, sep="\t", index=False)
    det = tmp_path / "det.tsv"
    det.write_text("experiment\n")
    pub = tmp_path / "pub.csv"
    pub.write_text("# Paper, Table X\nrow,block,metric,value,note\nDAE (orig),b,dice,40.0,\nAE,b,dice,10.0,\n")
    out = {k: str(tmp_path / f"t.{k}") for k in ("md", "csv", "tex", "vs_md", "vs_csv")}
    table_stage(spec, {"dae_flair": [str(seg), str(det)]}, str(pub), out, caption_context(spec, demo))
    md = Path(out["md"]).read_text()
    assert "The paper's rows not run here: AE." in md and "| DAE (orig) | 50.0 | 50.0 |" in md
    assert "coarse noise σ" in md and "Lesion size classes" in md
    cmp = pd.read_csv(out["vs_csv"])
    assert cmp.loc[(cmp["row"] == "DAE (orig)") & (cmp["metric"] == "dice"), "difference"].item() == pytest.approx(10.0)
