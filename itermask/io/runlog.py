"""Per-stage wall times from a Snakemake run log (``.snakemake/log/*.snakemake.log``).

Snakemake prints a ``[timestamp]`` line before each job's ``rule NAME:`` block (with its
``jobid:``) and before each ``Finished jobid: N (Rule: NAME)`` line; a job's wall time is the
difference of the two timestamps (1 s resolution). Used by ``benchmarks/stage_times.py``.
Rules made in a loop, named ``<stage>__<parts>`` (the multi-subject ``infer__<experiment>__...``
jobs), count under their stage.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Iterable

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\s*$")
_RULE = re.compile(r"^\s*(?:local)?rule (\w+):\s*$")
_JOBID = re.compile(r"^\s+jobid: (\d+)\s*$")
_DONE = re.compile(r"^\s*Finished jobid: (\d+) \(Rule: (\w+)\)")


@dataclass(frozen=True)
class RunTimes:
    """Wall seconds per finished job, by rule, and the run's first-to-last timestamp span."""

    jobs: dict[str, list[float]]
    span_s: float

    def job_seconds(self) -> float:
        return float(sum(sum(v) for v in self.jobs.values()))


def _stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")


def parse_run_log(lines: Iterable[str]) -> RunTimes:
    """Job wall times by rule from the lines of one Snakemake log (group jobs count per rule)."""
    now: dt.datetime | None = None
    first: dt.datetime | None = None
    pending: tuple[str, dt.datetime] | None = None
    started: dict[str, tuple[str, dt.datetime]] = {}
    jobs: dict[str, list[float]] = {}
    for line in lines:
        if m := _STAMP.match(line):
            now = _stamp(m.group(1))
            first = first or now
        elif (m := _RULE.match(line)) and now is not None:
            pending = (m.group(1), now)
        elif (m := _JOBID.match(line)) and pending is not None:
            started[m.group(1)] = pending
            pending = None
        elif (m := _DONE.match(line)) and m.group(1) in started and now is not None:
            rule, t0 = started.pop(m.group(1))
            jobs.setdefault(rule.split("__")[0], []).append((now - t0).total_seconds())
    span = (now - first).total_seconds() if now is not None and first is not None else 0.0
    return RunTimes(jobs=jobs, span_s=span)


def stage_table(times: RunTimes) -> str:
    """Markdown table: rule, jobs, total / mean / max job seconds; slowest stage first."""
    rows = ["| stage (rule) | jobs | job-seconds | mean s | max s |", "|---|---|---|---|---|"]
    for rule, v in sorted(times.jobs.items(), key=lambda kv: -sum(kv[1])):
        rows.append(f"| {rule} | {len(v)} | {sum(v):.0f} | {sum(v) / len(v):.1f} | {max(v):.0f} |")
    rows.append(f"| total | {sum(len(v) for v in times.jobs.values())} | {times.job_seconds():.0f} | | |")
    return "\n".join(rows)
