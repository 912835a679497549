"""Per-stage wall times of a Snakemake run, from its log (prints a table, asserts nothing).

    python benchmarks/stage_times.py                      # newest run log in .snakemake/log/ that ran jobs
    python benchmarks/stage_times.py path/to/run.log

Job-seconds summed over jobs exceed the run's wall time when jobs ran side by side.
A missing or unreadable log, or one with no finished job (not a Snakemake run log, or a dry
run), is a one-line error (exit 1).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from itermask.io.runlog import parse_run_log, stage_table  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", nargs="?", help="Snakemake log (default: the newest in .snakemake/log/ that ran jobs)")
    args = ap.parse_args(argv)
    if args.log:
        path = Path(args.log)
    else:
        logs = sorted(Path(".snakemake/log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
        logs = [p for p in logs if "Finished jobid" in p.read_text(errors="replace")]  # not dry runs
        if not logs:
            sys.exit("no .snakemake/log/*.snakemake.log here: run from the directory Snakemake ran in, or give a log")
        path = logs[-1]
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            times = parse_run_log(fh)
    except FileNotFoundError:
        sys.exit(f"stage_times: {path}: no such file")
    except OSError as exc:
        sys.exit(f"stage_times: {path}: cannot read ({exc.strerror or exc})")
    if not times.jobs:
        sys.exit(f"stage_times: {path}: no finished job in it (not a Snakemake run log, or a dry run)")
    print(f"{path}: run span {times.span_s:.0f} s (first to last timestamp), "
          f"{times.job_seconds():.0f} job-seconds")
    print(stage_table(times))


if __name__ == "__main__":
    main()
