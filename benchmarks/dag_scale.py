"""How planning (`snakemake -n`) scales with the number of subjects (issue 13, item 3).

For each N, builds in a temporary folder one dataset of N zero-byte subjects (two sequences,
T1w and FLAIR; 70 % train, 10 % val, 10 % healthy test, 10 % lesioned test with labels) and a
config with two experiments on FLAIR, one ``itermask3d`` (detect + segment, two synthetic
artefact types) and one ``itermask2`` (segment), then times ``snakemake -n`` on it and prints
wall and CPU seconds (CPU seconds vary less on a shared machine), the peak RSS of the Snakemake
process and the number of jobs. Then it times the plan one cluster job makes before it runs:
the SLURM executor starts each job as ``snakemake --target-jobs <rule>:<wildcards>``, which
parses the workflow and reads the config again on the node (``one job s``, one subject's
preprocessing job). Asserts nothing.

    .venv/bin/python benchmarks/dag_scale.py                    # N = 100, 1000, 10000
    .venv/bin/python benchmarks/dag_scale.py -n 1000 --profile /tmp/dag.prof
    .venv/bin/python -m pstats /tmp/dag.prof                    # sort cumtime / stats 30
    .venv/bin/python benchmarks/dag_scale.py -n 1000 --bare     # Snakemake's own cost

``--bare`` plans the same jobs from bare rules (benchmarks/dag_floor.smk: static inputs,
``shell: touch``, no params, log, conda, script, group or resources): the part of the time that
is Snakemake's own per-job work, which no change to the pipeline's code removes.

``--profile`` runs Snakemake in-process under cProfile (one N only). Timings on shared
machines vary: compare runs made one after the other.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BARE = ROOT / "benchmarks" / "dag_floor.smk"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
SPLITS = (("train", 0.7), ("val", 0.1), ("test_healthy", 0.1), ("test_lesion", 0.1))


def split_subjects(n: int) -> dict[str, list[str]]:
    """N subject IDs (s00001, ...) cut into the splits of SPLITS (the last takes the rest)."""
    ids = [f"s{i:05d}" for i in range(1, n + 1)]
    out, start = {}, 0
    for k, (split, fraction) in enumerate(SPLITS):
        stop = n if k == len(SPLITS) - 1 else start + round(n * fraction)
        out[split] = ids[start:stop]
        start = stop
    return out


def write_study(folder: Path, n: int) -> Path:
    """Zero-byte raw files of N subjects and the config that declares them; returns the config."""
    splits = split_subjects(n)
    raw = folder / "raw"
    for split, ids in splits.items():
        for s in ids:
            (raw / f"sub-{s}").mkdir(parents=True, exist_ok=True)
            for q in ("T1w", "FLAIR"):
                (raw / f"sub-{s}" / f"sub-{s}_{q}.nii.gz").touch()
            if split == "test_lesion":
                (raw / f"sub-{s}" / f"sub-{s}_lesion.nii.gz").touch()
    config = {
        "results_dir": "results",
        "seed": 0,
        "device": "cpu",
        "datasets": {"big": {
            "pattern": f"{raw}/sub-{{subject}}/sub-{{subject}}_{{sequence}}.nii.gz",
            "label_pattern": f"{raw}/sub-{{subject}}/sub-{{subject}}_lesion.nii.gz",
            "sequences": ["T1w", "FLAIR"],
            "brain_mask": {"method": "deepbet", "sequence": "T1w"},
            "splits": {split: str(folder / f"{split}.txt") for split in splits},
        }},
        "preprocess": {"spacing_mm": 1.0, "box": [192, 192, 192]},
        "experiments": {
            "im3d": {"method": "itermask3d", "dataset": "big", "sequence": "FLAIR", "detect": True, "segment": True,
                     "train": {"steps": 100, "epochs": None}},
            "im2": {"method": "itermask2", "dataset": "big", "sequence": "FLAIR", "segment": True,
                    "train": {"steps": 100, "epochs": None}},
        },
        "artefacts": {"types": ["chunk_middle", "ghosting"]},
    }
    for split, ids in splits.items():
        (folder / f"{split}.txt").write_text("".join(f"{s}\n" for s in ids))
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def job_count(stdout: str) -> int | None:
    """The 'total' line of Snakemake's job-count table."""
    m = re.search(r"^total\s+(\d+)\s*$", stdout, re.MULTILINE)
    return int(m.group(1)) if m else None


def one_job(n: int, bare: bool = False) -> str:
    """The --target-jobs spec of the first subject's preprocessing job (a cluster job's own plan)."""
    rule = "preprocess_subject" if bare else "preprocess_subject__big"
    return f"{rule}:subject={split_subjects(n)['train'][0]}"


def dry_run(folder: Path, config: Path, snakefile: Path = ROOT / "Snakefile",
            target_job: str | None = None) -> tuple[float, float, float, int | None, str]:
    """(wall seconds, CPU seconds, peak RSS MB of the Snakemake process, jobs, output) of `snakemake -n`,
    of the whole study or, with ``target_job``, of that one job as a cluster job plans it."""
    env = dict(os.environ, PATH=f"{SNAKEMAKE.parent}:{os.environ['PATH']}")
    cmd = [str(SNAKEMAKE), "-s", str(snakefile), "--configfile", str(config), "--cores", "2", "-n", "--quiet", "rules"]
    cmd += ["--target-jobs", target_job] if target_job else []
    stem = "one_job" if target_job else "dry_run"  # --keep keeps both outputs
    out, err = folder / f"{stem}.out", folder / f"{stem}.err"
    with open(out, "w") as fo, open(err, "w") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=fo, stderr=fe)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (ru_maxrss in KiB)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake -n failed for {folder}:\n{(out.read_text() + err.read_text())[-3000:]}")
    stdout = out.read_text()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, job_count(stdout), stdout


def profile(folder: Path, config: Path, out: Path) -> None:
    """`snakemake -n` in this process under cProfile, stats written to `out`."""
    import cProfile

    from snakemake.cli import main as snakemake_main

    os.chdir(folder)
    argv = ["-s", str(ROOT / "Snakefile"), "--configfile", str(config), "--cores", "2", "-n", "--quiet", "rules"]
    prof = cProfile.Profile()
    try:
        prof.runcall(snakemake_main, argv)
    except SystemExit:
        pass
    prof.dump_stats(out)
    print(f"profile written to {out} (python -m pstats {out})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--subjects", type=int, nargs="+", default=[100, 1000, 10000], help="values of N")
    ap.add_argument("--profile", type=Path, help="cProfile the dry-run of the (single) N into this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders (printed)")
    ap.add_argument("--bare", action="store_true", help="plan the same jobs from bare rules (dag_floor.smk)")
    args = ap.parse_args(argv)
    if args.profile and len(args.subjects) != 1:
        ap.error("--profile takes one N")
    print(f"{'subjects':>9}{'jobs':>9}{'dry-run s':>11}{'CPU s':>9}{'peak RSS MB':>13}{'one job s':>11}")
    for n in args.subjects:
        folder = Path(tempfile.mkdtemp(prefix=f"dag_scale_{n}_"))
        config = write_study(folder, n)
        if args.profile:
            profile(folder, config, args.profile.resolve())
            return
        snakefile = BARE if args.bare else ROOT / "Snakefile"
        wall, cpu, rss, jobs, _ = dry_run(folder, config, snakefile)
        one = dry_run(folder, config, snakefile, one_job(n, args.bare))[0]
        print(f"{n:>9}{jobs if jobs is not None else '?':>9}{wall:>11.1f}{cpu:>9.1f}{rss:>13.0f}{one:>11.1f}", flush=True)
        if args.keep:
            print(f"  kept {folder}")
        else:
            import shutil
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
