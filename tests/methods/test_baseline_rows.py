"""The baselines' rows in the demo's tables (issue 11): every table that the papers print with
baselines has rows for the demo's baselines, and each of their cells is computed: the dry-run's
table job reads the cell experiment's metrics file."""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

from itermask.config.study import Study, load_config
from itermask.evaluation.spec import row_cells

ROOT = Path(__file__).resolve().parents[2]
BASELINES = ("ae", "dae", "cyclic_unet")
# table -> baseline rows (label: experiment) the demo prints, as the papers label them
EXPECTED = {
    "itermask3d_table1_synthetic_artefact_detection": {"AE": "ae_flair", "Cyclic UNet": "cyclic_flair",
                                                       "DAE (orig)": "dae_flair"},
    "itermask3d_table2_real_artefacts": {"AE": "ae_flair", "Cyclic UNet": "cyclic_flair", "DAE (orig)": "dae_flair"},
    "itermask3d_table3_2d_segmentation_brats": {"DAE [0,+inf]": "dae2d_flair_pos"},
    "itermask3d_table4_3d_segmentation": {"AE": "ae_flair", "Cyclic UNet": "cyclic_flair", "DAE (orig)": "dae_flair"},
    "itermask2_table1_brats_sequences": {"DAE [0,+inf]": "dae2d_flair_pos",
                                         "DAE [0,+inf] (per-image best)": "dae2d_flair_pos"},
    "itermask2_table2_isles_atlas": {"DAE": "dae2d_flair_pos", "DAE (per-image best)": "dae2d_flair_pos"},
    "itermask2_table3_ablation_by_size": {"DAE": "dae2d_flair_pos", "DAE (per-image best)": "dae2d_flair_pos"},
}


def _published_labels(stem: str) -> set[str]:
    text = (ROOT / "itermask/evaluation/published" / f"{stem}.csv").read_text()
    rows = [line for line in text.splitlines() if line and not line.startswith("#")][1:]
    return {fields[0] for fields in csv.reader(rows)}


def test_demo_tables_have_the_baseline_rows():
    cfg = load_config(ROOT / "config.yaml")
    study = Study(cfg, base_dir=ROOT)
    tables = {t["name"]: t for t in cfg["tables"]}
    for name, rows in EXPECTED.items():
        spec = tables[name]
        found = {r["label"]: r for r in spec["rows"]}
        for label, experiment in rows.items():
            cells = row_cells(spec, found[label])
            assert cells and set(cells.values()) == {experiment}, (name, label)
            assert found[label]["grey"] == label.endswith("(per-image best)")
        # labels are the papers' (the published CSV's rows), so the comparison finds them
        assert set(rows) <= _published_labels(spec["published"]), name
    demo_baselines = {e for e in cfg["experiments"] if study.settings(e).method in BASELINES}
    assert demo_baselines == {e for rows in EXPECTED.values() for e in rows.values()}  # each one has rows


def test_dry_run_computes_the_baseline_cells(tmp_path):
    cfg = load_config(ROOT / "config.yaml")
    results = cfg["results_dir"]
    targets = [f"{results}/tables/{name}.md" for name in EXPECTED]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    res = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), *targets,
                          "-n", "--cores", "1", "--configfile", str(ROOT / "config.yaml")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout
    inputs = {}  # table name -> the metrics files its job reads
    for block in res.stdout.split("\nrule ")[1:]:
        if block.startswith("table:"):
            name = re.search(r"output: \S+/tables/(\w+)\.md", block).group(1)
            inputs[name] = set(re.search(r"input: (.*)", block).group(1).split(", "))
    tables = {t["name"]: t for t in cfg["tables"]}
    for name, rows in EXPECTED.items():
        kind = "detection" if tables[name]["kind"] == "detection" else "segmentation"
        for experiment in rows.values():
            assert f"{results}/metrics/{experiment}/{kind}.tsv" in inputs[name], (name, experiment)
    # and the baselines' training and inference jobs are planned
    for experiment in {e for rows in EXPECTED.values() for e in rows.values()}:
        assert f"{results}/models/{experiment}/model.pt" in res.stdout
        assert f"{results}/metrics/{experiment}/segmentation.tsv" in res.stdout
