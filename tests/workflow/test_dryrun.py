"""Dry-runs (`snakemake -n`) of every shipped configuration, and `snakemake --lint`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from itermask.config.study import Study, iter_files, load_config

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def _snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--cores", "2", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )


def _job_counts(stdout: str) -> dict[str, int]:
    counts, inside = {}, False
    for line in stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            inside = True
            continue
        if inside:
            parts = line.split()
            if not parts:
                break
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
    return counts


def test_demo_config_dry_run(tmp_path):
    res = _snakemake("-n", "--configfile", str(ROOT / "config.yaml"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    counts = _job_counts(res.stdout)
    cfg = load_config(ROOT / "config.yaml")
    assert counts["demo_data"] == 1
    study = Study(cfg, base_dir=ROOT)  # + the failed-strip scans of the derived dataset demofailedstrip
    # the demo's preprocessing: resources.preprocess_subjects_per_job subjects of a dataset per job,
    # in split order, the derived dataset's subjects included
    demo, per_job = study.datasets["demo"], cfg["resources"]["preprocess_subjects_per_job"]
    assert per_job > 1 and len(demo.subjects) == 26
    chunks = {r: n for r, n in counts.items() if r.startswith("preprocess")}
    assert chunks == {**{f"preprocess__demo__{k}": 1 for k in range(-(-26 // per_job))}, "preprocess__demofailedstrip__0": 1}
    assert not {"check_inputs", "brain_mask", "normalise", "resample_label", "slices2d", "qc_subject"} & set(counts)
    made = {f: j["rule"] for j in _jobs(res.stdout) for f in j["output"]}
    pre, qc = f"{cfg['results_dir']}/preproc/demo", f"{cfg['results_dir']}/qc/demo"
    for k in range(-(-26 // per_job)):  # every file of each of the chunk's subjects, labelled or not
        for s in demo.subjects[k * per_job:(k + 1) * per_job]:
            files = [f"{pre}/sub-{s}/{name}" for name in ("inputs_checked.json", "native_brainmask.nii.gz", "brainmask.nii.gz",
                                                          "T1w.nii.gz", "FLAIR.nii.gz", "T2w.nii.gz", "FLAIR_hf-r15.nii.gz")]
            files += [f"{qc}/sub-{s}{end}" for end in ("_skullstrip.png", ".png", ".json")]
            assert {made[f] for f in files} == {f"preprocess__demo__{k}"}, s
            label = made.get(f"{pre}/sub-{s}/label.nii.gz")
            assert label == (f"preprocess__demo__{k}" if s in demo.splits["val_lesion"] + demo.splits["test_lesion"] else None)
    assert made[f"{pre}/sub-d11/FLAIR_slices2d-r15.npz"] and made[f"{pre}/sub-d01/FLAIR_slices2d-r15.npz"]
    assert made[f"{cfg['results_dir']}/preproc/demofailedstrip/sub-d09/FLAIR.nii.gz"] == "preprocess__demofailedstrip__0"
    assert not any(f.endswith("T1w_slices2d-r15.npz") for f in made)  # no slice-input experiment on T1w
    assert counts["table"] == len(cfg["tables"])
    assert [t["name"] for t in cfg["tables"]] == PAPER_TABLES  # the demo builds the same ten tables
    # sensitivity sweeps: one figure per sweep, fed by the derived experiments' metrics
    assert counts["sensitivity"] == len(cfg["sweeps"]) >= 1
    for sweep in cfg["sweeps"]:
        assert f"{cfg['results_dir']}/figures/sensitivity/{sweep['experiment']}_{sweep['param']}.png" in res.stdout
    assert f"{cfg['results_dir']}/metrics/im2_flair__tau_percentile_60/segmentation.tsv" in res.stdout
    # IterMask3D Table 6's adaptive row: IterMask2 with the subject-specific tau, on im2_flair's model
    table6 = _table_inputs(res.stdout, "itermask3d_table6_fixed_vs_adaptive_2d")
    assert {f"{cfg['results_dir']}/metrics/{e}/segmentation.tsv" for e in ("im2_flair", "im2_flair_adaptive")} <= table6
    assert study.settings("im2_flair_adaptive").infer["threshold"] == "subject"
    assert study.settings("im2_flair_adaptive").model_owner == "im2_flair"


PAPER_TABLES = [
    "itermask3d_table1_synthetic_artefact_detection", "itermask3d_table2_real_artefacts",
    "itermask3d_table3_2d_segmentation_brats", "itermask3d_table4_3d_segmentation", "itermask3d_table5_ablation",
    "itermask3d_table6_fixed_vs_adaptive_2d", "itermask3d_table7_fixed_vs_adaptive_real",
    "itermask2_table1_brats_sequences", "itermask2_table2_isles_atlas", "itermask2_table3_ablation_by_size",
]


def test_paper_config_dry_run_lists_every_table(tmp_path):
    cfg = load_config(ROOT / "paper.yaml")
    study = Study(cfg, base_dir=ROOT)
    for *_, path in iter_files(study):  # zero-byte stand-ins for the users' data
        p = tmp_path / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
    res = _snakemake("-n", "--configfile", str(ROOT / "paper.yaml"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    names = [t["name"] for t in cfg["tables"]]
    assert names == PAPER_TABLES  # the papers' ten tables, each a DAG target
    for name in names:
        for file in (f"{name}.md", f"{name}.csv", f"{name}.tex", f"{name}_vs_published.md"):
            assert f"{cfg['results_dir']}/tables/{file}" in res.stdout
    counts = _job_counts(res.stdout)
    assert "demo_data" not in counts
    assert counts["train"] == counts["training_items"] == len(study.trained_experiments())
    # a training job reads its items file alone (rule training_items gathers the subjects' files)
    trains = [j for j in _jobs(res.stdout) if j["rule"] == "train"]
    assert trains and all(j["input"] == [j["output"][0].replace("model.pt", "items.json")] for j in trains)
    assert counts["sensitivity"] == len(cfg["sweeps"])
    assert f"{cfg['results_dir']}/models/im2_brats_flair__hf_radius_5/model.pt" in res.stdout
    # IterMask3D Table 6's adaptive row: one subject-specific-tau experiment per BraTS sequence, no new model
    table6 = _table_inputs(res.stdout, "itermask3d_table6_fixed_vs_adaptive_2d")
    for seq in ("flair", "t1", "t1ce", "t2"):
        fixed, adaptive = f"im2_brats_{seq}", f"im2_brats_{seq}_adaptive"
        assert f"{cfg['results_dir']}/metrics/{adaptive}/segmentation.tsv" in table6
        assert study.settings(adaptive).infer["threshold"] == "subject"
        assert study.settings(adaptive).model_owner == fixed
    # the metallic-susceptibility set (Tables 2, 7): the T2 model's scores on it, no synthetic artefacts on OASIS-3
    jobs = _jobs(res.stdout)
    for table in ("itermask3d_table2_real_artefacts", "itermask3d_table7_fixed_vs_adaptive_real"):
        assert f"{cfg['results_dir']}/metrics/im3d_t2_metal/detection.tsv" in _table_inputs(res.stdout, table)
    assert f"{cfg['results_dir']}/metrics/im3d_t2_metal_fixed/detection.tsv" in _table_inputs(
        res.stdout, "itermask3d_table7_fixed_vs_adaptive_real")
    inferred = {f for j in jobs if j["rule"].split("__")[0] == "infer" for f in j["output"]}
    for subject in study.datasets["metal"].subjects:
        assert f"{cfg['results_dir']}/inference/im3d_t2_metal/metal/sub-{subject}" in inferred
    # every baseline row of Table 2's metallic block: that baseline's OASIS-3 T2 model scores the set
    table2 = _table_inputs(res.stdout, "itermask3d_table2_real_artefacts")
    for exp in ("ae_oasis_t2", "dae_oasis_t2", "dae_oasis_t2_tuned", "cyclic_oasis_t2", "ddpm_oasis_t2",
                "autoddpm_oasis_t2"):
        assert f"{cfg['results_dir']}/metrics/{exp}/detection.tsv" in table2
        assert f"{cfg['results_dir']}/inference/{exp}/metal/sub-{study.datasets['metal'].subjects[0]}" in inferred
    assert not any("/artefacts/oasis3/" in f for j in jobs for f in j["output"])


def test_tiny_config_dry_run(tmp_path):
    """Per-rule job counts of the tiny config, each derived from the config (not copied from output)."""
    res = _snakemake("-n", "--configfile", str(ROOT / "tests/configs/tiny.yaml"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    cfg = load_config(ROOT / "tests/configs/tiny.yaml")
    # 8 subjects: train 3, val 1, val_lesion 1, test_healthy 1, test_lesion 2
    splits = cfg["datasets"]["tiny"]["splits"]
    subjects = {s for names in splits.values() for s in names}
    labelled = set(splits["val_lesion"]) | set(splits["test_lesion"])
    exps = cfg["experiments"]
    # inference runs on every subject that is not a training one: val, val_lesion and test_lesion
    # (segmentation and the honest threshold), plus test_healthy (the artefact scans) when the experiment detects
    runs = {e: set(splits["val"]) | labelled | (set(splits["test_healthy"]) if exps[e].get("detect") else set())
            for e in exps}
    # each sweep value is a derived experiment inferred on its experiment's subjects (same model)
    for sweep in cfg["sweeps"]:
        base = sweep["experiment"]
        runs.update({f"{base}__{sweep['param']}_{v}": runs[base] for v in sweep["values"]})
    expected = {
        "demo_data": 1,                                         # demo.enabled: one generated dataset
        "preprocess_labelled__tiny": len(labelled),             # 3: subjects with a lesion label
        "preprocess_subject__tiny": len(subjects - labelled),   # 5: the others
        # one job per test_healthy subject and sequence of a detecting experiment (im3d on FLAIR): 1
        "artefacts": len(splits["test_healthy"]) * len({e["sequence"] for e in exps.values() if e.get("detect")}),
        "qc_table": len(cfg["datasets"]),                       # 1 per dataset
        "training_items": sum("model_from" not in e for e in exps.values()),  # 2: im3d and im2 (im3d_fixed reuses)
        "train": sum("model_from" not in e for e in exps.values()),
        "infer": sum(len(s) for s in runs.values()),           # im3d 5 + im3d_fixed 4 + im2 4 + 2 sweep values x 4 = 21
        "evaluate": len(runs),                                  # 3 experiments + 2 sweep values = 5
        "figures": len(exps),                                   # 3: configured experiments, not sweep-derived ones
        "sensitivity": len(cfg["sweeps"]),                      # 1
        "table": len(cfg["tables"]),                            # 3
        "all": 1,
    }
    assert expected["infer"] == 21 and len(runs) == 5  # the derivation above, spelt out
    counts = _job_counts(res.stdout)
    assert counts.pop("total") == sum(expected.values())
    assert counts == expected
    # and the inference jobs are exactly those (experiment, subject) pairs
    infer_out = {tuple(f.split("/")[2:5]) for j in _jobs(res.stdout) if j["rule"] == "infer" for f in j["output"]}
    assert infer_out == {(e, "tiny", f"sub-{s}") for e, subs in runs.items() for s in subs}


def test_bad_config_fails_with_clear_message(tmp_path):
    bad = load_config(ROOT / "config.yaml")
    bad["preprocess"]["spacing_mm"] = "three"
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    res = _snakemake("-n", "--configfile", str(path), cwd=tmp_path)
    assert res.returncode != 0
    assert "config key 'preprocess.spacing_mm': expected number, got str 'three'" in res.stderr + res.stdout


def test_lint_clean():
    res = subprocess.run([SNAKEMAKE, "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("hash_seed", ["1", "4", "7"])
def test_cluster_groups_never_depend_on_themselves(tmp_path, hash_seed):
    """With the SLURM profile's group-components, Snakemake packs subjects' group components
    together in an order that depends on Python's hash seed (4 packed a validation run with a
    fixed-tau run into one group job, which then depended on itself through the former rule
    fixed_tau). The fixed tau is now the model's calibration: no inference waits for another."""
    import yaml

    components = yaml.safe_load((ROOT / "slurm" / "config.yaml").read_text())["group-components"]
    assert components.keys() >= {"subject", "inference"} and "inference_fixed" not in components
    env_seed = dict(os.environ, PYTHONHASHSEED=hash_seed)
    res = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--cores", "2", "-n", "--configfile",
         str(ROOT / "tests" / "configs" / "tiny.yaml"), "--group-components",
         *[f"{k}={v}" for k, v in components.items()]],
        cwd=tmp_path, env=dict(env_seed, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"),
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr + res.stdout
    study = Study(load_config(ROOT / "tests" / "configs" / "tiny.yaml"), base_dir=ROOT)
    fixed = {e for e in study.experiments if study.settings(e).infer.get("threshold") == "fixed"}
    assert fixed  # the case that once formed a self-dependent group (im3d_fixed)
    jobs = _jobs(res.stdout)
    # the profile's groups are formed (so the packing above was exercised) ...
    assert {j["group"] for j in jobs} - {None} == set(components)
    infer = [j for j in jobs if j["rule"] == "infer"]
    assert infer and all(j["group"] == "inference" for j in infer)
    # ... the fixed-tau runs among them, reading their model (its calibration) and no other job's output
    model_of = {e: study.settings(e).model_owner for e in fixed}
    fixed_jobs = [j for j in infer if j["output"][0].split("/")[2] in fixed]
    assert {j["output"][0].split("/")[2] for j in fixed_jobs} == fixed
    for j in fixed_jobs:
        assert f"{study.results}/models/{model_of[j['output'][0].split('/')[2]]}/model.pt" in j["input"]
    # no inference waits for another: no infer job reads a file an infer job writes
    inferred = {f for j in infer for f in j["output"]}
    assert not any(f == d or f.startswith(d + "/") for j in infer for f in j["input"] for d in inferred)


def _table_inputs(stdout: str, name: str) -> set[str]:
    """The files the dry-run's job of table ``name`` reads."""
    (job,) = [j for j in _jobs(stdout) if j["rule"] == "table" and any(f"/tables/{name}.md" in f for f in j["output"])]
    return set(job["input"])


def _jobs(stdout: str) -> list[dict[str, object]]:
    """(rule, inputs, outputs, group) of every job block of a dry-run listing; group: the name of
    the "Group job <name>" block the job is indented under, None for a job outside any group."""
    jobs, job, group = [], None, None
    for raw in stdout.splitlines():
        line = raw.strip()
        if "Group job " in line:
            group = line.split("Group job ")[1].split()[0]
        elif line.startswith(("rule ", "localrule ")):
            group = group if raw[:1].isspace() else None  # a group's jobs are indented under it
            job = {"rule": line.split()[1].rstrip(":"), "input": [], "output": [], "group": group}
            jobs.append(job)
        elif job is not None and line.startswith(("input:", "output:")):
            key, _, files = line.partition(": ")
            job[key.rstrip(":")] = [f.strip() for f in files.split(",") if f.strip()]
    return jobs


def test_hf_radius_sweep_asks_the_dag_for_hf_files_at_each_radius(tmp_path):
    """An experiment's hf_radius and an hf_radius sweep are files of the DAG: `_hf-r<r>` volumes
    (rule high_frequency), artefact `image_hf-r<r>` (rule artefact_high_frequency) and
    `_slices2d-r<r>` slices (rule slices2d); training (through its items file) and inference read
    them, nothing else makes them.
    At the default radii the subject's preprocessing job writes them."""
    import yaml

    cfg = load_config(ROOT / "config.yaml")
    cfg["experiments"]["im3d_r10"] = {"method": "itermask3d", "dataset": "demo", "sequence": "FLAIR",
                                      "hf_radius": 10, "detect": True, "segment": True}
    cfg["sweeps"] = [{"experiment": "im2_flair", "param": "hf_radius", "values": [5, 15]},
                     {"experiment": "im3d_flair_seg", "param": "hf_radius", "values": [7]}]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = _snakemake("-n", "--configfile", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    jobs = _jobs(res.stdout)
    made = {f: j["rule"] for j in jobs for f in j["output"]}
    read = {f for j in jobs if j["rule"].split("__")[0] in ("training_items", "infer") for f in j["input"]}
    pre = "results/preproc/demo"
    assert made[f"{pre}/sub-d01/FLAIR_hf-r10.nii.gz"] == "high_frequency"
    assert made[f"{pre}/sub-d01/FLAIR_hf-r7.nii.gz"] == "high_frequency"
    assert made[f"{pre}/sub-d01/FLAIR_hf-r15.nii.gz"] == "preprocess__demo__0"  # the default radius: same job
    assert made[f"{pre}/sub-d01/FLAIR_slices2d-r5.npz"] == "slices2d"
    assert made[f"{pre}/sub-d01/FLAIR_slices2d-r15.npz"] == "preprocess__demo__0"
    assert made[f"{pre}/sub-d11/FLAIR_slices2d-r5.npz"] == "slices2d"  # a labelled subject's
    art = "results/artefacts/demo/FLAIR/sub-d09/ghosting-s1"
    assert made[f"{art}/image_hf-r10.nii.gz"] == "artefact_high_frequency"
    assert made[f"{art}/image_hf-r15.nii.gz"] == "artefacts"
    for f in (f"{pre}/sub-d01/FLAIR_hf-r10.nii.gz", f"{pre}/sub-d01/FLAIR_hf-r7.nii.gz",
              f"{pre}/sub-d01/FLAIR_slices2d-r5.npz", f"{pre}/sub-d07/FLAIR_slices2d-r5.npz",
              f"{art}/image_hf-r10.nii.gz"):
        assert f in read
    hf_files = [f for f in made if "_hf-r" in f or "_slices2d-r" in f]
    assert all(made[f].split("__")[0] in ("preprocess", "high_frequency", "artefacts",
                                          "artefact_high_frequency", "slices2d")
               for f in hf_files)
    train = {j["output"][0].split("/")[2]: j["input"] for j in jobs if j["rule"] == "training_items"}
    assert all("_hf-r10" in f for f in train["im3d_r10"] if "_hf-r" in f)
    assert all("-r5" in f for f in train["im2_flair__hf_radius_5"])
    assert not any(j["rule"] in ("high_frequency", "artefact_high_frequency", "slices2d") and "-r15" in j["output"][0]
                   for j in jobs)


def test_demo_config_with_one_preprocessing_job_per_subject(tmp_path):
    """resources.preprocess_subjects_per_job 1 (the default, clusters): per dataset one rule for
    the subjects with a label, one for the others, one job per subject."""
    import yaml

    cfg = load_config(ROOT / "config.yaml")
    cfg["resources"]["preprocess_subjects_per_job"] = 1
    path = tmp_path / "per_subject.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = _snakemake("-n", "--configfile", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    counts, study = _job_counts(res.stdout), Study(cfg, base_dir=ROOT)
    demo = study.datasets["demo"]
    labelled = len(demo.splits["val_lesion"]) + len(demo.splits["test_lesion"])
    assert counts["preprocess_labelled__demo"] == labelled == 16
    assert counts["preprocess_subject__demo"] == len(demo.subjects) - labelled
    assert counts["preprocess_subject__demofailedstrip"] == len(study.failed_strip_candidates("demo"))
    assert "preprocess_labelled__demofailedstrip" not in counts and not any(r.startswith("preprocess__") for r in counts)
    made = {f: j["rule"] for j in _jobs(res.stdout) for f in j["output"]}
    pre, qc = f"{cfg['results_dir']}/preproc/demo", f"{cfg['results_dir']}/qc/demo"
    assert made[f"{pre}/sub-d11/label.nii.gz"] == made[f"{qc}/sub-d11.json"] == "preprocess_labelled__demo"
    assert made[f"{pre}/sub-d11/FLAIR_slices2d-r15.npz"] == "preprocess_labelled__demo"  # im2_flair segments it
    assert made[f"{pre}/sub-d01/FLAIR_slices2d-r15.npz"] == made[f"{qc}/sub-d01.png"] == "preprocess_subject__demo"
    assert not any(f.endswith("T1w_slices2d-r15.npz") for f in made)  # no slice-input experiment on T1w


def test_a_method_file_is_an_input_of_the_jobs_that_read_it(tmp_path):
    """AutoDDPM's infer.lpips_model (Method.inference_files / training_files) is an input of its
    inference jobs, and of its training job when training ends with the threshold calibration;
    a missing one stops the run at planning."""
    import yaml

    cfg = load_config(ROOT / "config.yaml")
    lpips = tmp_path / "lpips.pt"
    lpips.write_bytes(b"")
    auto = cfg["experiments"]["autoddpm_flair"]
    auto["infer"] = {**auto.get("infer", {}), "lpips_model": str(lpips), "mask_threshold_val_percentile": 99}
    auto.pop("model_from", None)  # a calibrating AutoDDPM trains its own model (the demo's uses the DDPM's) ...
    auto["train"] = cfg["experiments"]["ddpm_flair"]["train"]  # ... as the DDPM's
    cfg["resources"]["infer_subjects_per_job"] = 1  # one inference job per subject, as on a cluster
    path = tmp_path / "lpips.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = _snakemake("-n", "--configfile", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    jobs = _jobs(res.stdout)
    reads = [(j["rule"].split("__")[0] + ("/" + j["output"][0].split("/")[2] if j["output"] else ""), set(j["input"]))
             for j in jobs if j["rule"].split("__")[0] in ("train", "infer")]  # one entry per job
    own = [files for key, files in reads if key.endswith("/autoddpm_flair")]
    assert [key for key, _ in reads].count("train/autoddpm_flair") == 1
    assert [key for key, _ in reads].count("infer/autoddpm_flair") > 1  # one per subject
    assert all(str(lpips) in files for files in own)
    assert not any(str(lpips) in files for key, files in reads if not key.endswith("/autoddpm_flair"))
    lpips.unlink()
    res = _snakemake("-n", "--configfile", str(path), cwd=tmp_path)
    assert res.returncode != 0 and "MissingInputException" in res.stderr + res.stdout
