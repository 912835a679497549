"""The papers' published numbers (data, never a cell of a regenerated table) and the
published-vs-reproduced comparison written beside each table.

Published CSVs live in ``itermask/evaluation/published/<table>.csv``: ``#`` header lines cite
the paper and table, then columns ``row, block, metric, value, note`` (one printed number per
line, in the papers' units; ``note`` flags misprints and printed labels, values kept as
printed). The comparison matches cells by (row label, block key, metric): published,
reproduced (the regenerated table's CSV, same units), difference = reproduced − published,
left empty where the note ends a misprint's description with ``(kept as printed)``: that
number is not comparable (e.g. a fraction in a percent column, or a value no reading makes
sense of), so no difference with it means anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from itermask.evaluation.spec import METRICS
from itermask.io.atomic import write_table, write_text

PUBLISHED_DIR = Path(__file__).parent / "published"
KEYS = ["row", "block", "metric"]
COLUMNS = KEYS + ["published", "reproduced", "difference", "note"]
NOT_COMPARABLE = "(kept as printed)"  # a published note's mark of a misprint: no difference is computed
#: metrics whose published values follow the reference's definition, not ours (METHOD.md §8): their
#: difference also measures the definition; a comparison notes them per line and in its header
DEFINITION_DIFFERS = {
    "assd_mm": "ASSD (ours: surface distance; theirs: ITK's average Hausdorff distance over all voxels)",
    "auroc_voxel": "AUC (ours: inside the brain; theirs: background included)",
    "precision": "Prec (ours: an empty prediction left out of the mean; theirs: counted as 100 %, our Prec (ref))",
    "fnr80": "FNR80 (the reference's formula differs)", "fnr90": "FNR90 (the reference's formula differs)",
}
DIFFERS_NOTE = "definition differs"


def published_csv(name: str) -> Path:
    return PUBLISHED_DIR / f"{name}.csv"


def read_published(path: str | Path) -> pd.DataFrame:
    df = pd.read_csv(path, comment="#", dtype={"row": str, "block": str, "metric": str, "note": str})
    missing = [c for c in ("row", "block", "metric", "value") if c not in df]
    if missing:
        raise ValueError(f"{path}: published table lacks columns {missing}")
    df["note"] = df["note"].fillna("") if "note" in df else ""
    return df


def citation(path: str | Path) -> str:
    """The ``#`` header lines of a published CSV, joined."""
    lines = Path(path).read_text().splitlines()
    return " ".join(line.lstrip("#").strip() for line in lines if line.startswith("#"))


def reproduced_long(table_csv: str | Path) -> pd.DataFrame:
    """The ``<block>:<metric>`` mean columns of a regenerated table's CSV, one line per cell."""
    wide = pd.read_csv(table_csv, dtype={"row": str})
    records = []
    for _, r in wide.iterrows():
        for col in wide.columns:
            parts = col.split(":")
            if len(parts) == 2 and parts[1] in METRICS:
                records.append({"row": r["row"], "block": parts[0], "metric": parts[1], "reproduced": r[col]})
    return pd.DataFrame(records, columns=KEYS + ["reproduced"])


def compare(published: pd.DataFrame, reproduced: pd.DataFrame) -> pd.DataFrame:
    """Every published cell (reproduced NaN where the table has none), then reproduced cells
    the paper did not print; difference = reproduced − published, NaN for a misprint kept as
    printed (note marked NOT_COMPARABLE)."""
    pub = published.rename(columns={"value": "published"})[KEYS + ["published", "note"]]
    merged = pub.merge(reproduced, on=KEYS, how="outer", indicator=True, sort=False)
    merged["order"] = merged["_merge"].map({"both": 0, "left_only": 0, "right_only": 1})
    merged = merged.sort_values("order", kind="stable").drop(columns=["_merge", "order"])
    merged["note"] = merged["note"].fillna("")
    comparable = ~merged["note"].str.contains(NOT_COMPARABLE, regex=False)
    merged["difference"] = (merged["reproduced"] - merged["published"]).where(comparable)
    differs = merged["metric"].isin(list(DEFINITION_DIFFERS)) & merged["published"].notna()
    merged.loc[differs, "note"] = merged.loc[differs, "note"].map(lambda n: f"{n}; {DIFFERS_NOTE}" if n else DIFFERS_NOTE)
    return merged[COLUMNS].reset_index(drop=True)


def _differs_text(cmp: pd.DataFrame) -> str:
    """Header sentence naming the compared metrics whose definitions differ (none: empty)."""
    noted = set(cmp.loc[cmp["note"].str.contains(DIFFERS_NOTE, regex=False), "metric"])
    found = [text for metric, text in DEFINITION_DIFFERS.items() if metric in noted]
    return f" Definitions that differ ({DIFFERS_NOTE}): {'; '.join(found)}." if found else ""


def _fmt(v: Any) -> str:
    return "–" if pd.isna(v) else f"{float(v):.3g}" if abs(float(v)) < 1 else f"{float(v):.1f}"


def write_comparison(name: str, table_csv: str, published: str | None, out_md: str, out_csv: str,
                     row_aliases: dict[str, str]) -> pd.DataFrame:
    """Stage part: ``<name>_vs_published.{md,csv}`` (headers and a note when no published CSV).

    ``row_aliases``: our row label -> the label the paper printed, where they differ (e.g.
    "DDPM (image space)" -> "DDPM"); the comparison lists rows under the paper's label."""
    repro = reproduced_long(table_csv)
    repro["row"] = repro["row"].map(lambda r: row_aliases.get(r, r))
    if published is None or not Path(published).exists():
        cmp, source = compare(pd.DataFrame(columns=KEYS + ["value", "note"]), repro), "no published numbers for this table"
    else:
        cmp, source = compare(read_published(published), repro), citation(published)
    write_table(cmp, out_csv)
    lines = [f"# {name}: published vs reproduced", "",
             f"Published: {source.rstrip('.')}. Reproduced: this pipeline's table {name} (same units: percent unless "
             "PSNR dB, ASSD mm, SSIM fraction). Difference = reproduced − published; – = no value (for a "
             "difference: also a misprint kept as printed, not comparable; its note says so)."
             + _differs_text(cmp), "",
             "| Row | Block | Metric | Published | Reproduced | Difference | Note |", "|---|---|---|---|---|---|---|"]
    for _, r in cmp.iterrows():
        lines.append(f"| {r['row']} | {r['block']} | {METRICS[r['metric']][0] if r['metric'] in METRICS else r['metric']} "
                     f"| {_fmt(r['published'])} | {_fmt(r['reproduced'])} | {_fmt(r['difference'])} | {r['note']} |")
    write_text(out_md, "\n".join(lines + [""]))
    return cmp
