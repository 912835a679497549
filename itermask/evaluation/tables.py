"""The papers' tables as printed (METHOD.md §9), regenerated from the metric TSVs as Markdown,
CSV and LaTeX: rows = methods, column blocks = test set / sequence / anomaly, the metrics in
the papers' order and units (percent unless PSNR in dB, ASSD in mm, SSIM as a fraction), grey
per-image-best rows where the papers have them. The spec is config ``tables:``
(itermask.evaluation.spec); cells come from itermask.evaluation.layout, never from published
numbers. Beside each table, ``<name>_vs_published`` (itermask.evaluation.published).

Cells: ``mean ± SD`` over the block's subjects (segmentation) or one value (detection);
``(k/n)`` when k of n subjects have the metric defined; ``n/a`` when none has; ``–`` when the
row has no experiment for the block (reason in the caption). Bold: best white row per column among
the rows of one protocol, over cells defined for every subject.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from itermask.evaluation.layout import SIZE_METRICS, Cell, Row, best_flags, build, wide_frame
from itermask.evaluation.published import read_published, write_comparison
from itermask.evaluation.run_captions import convergence_text, inpainting_text
from itermask.evaluation.spec import DEFINITIONS, METRICS, UNIT_DEPENDENT, UNITS_TEXT
from itermask.io.atomic import write_table, write_text

PROTOCOL_TEXT = {
    "honest": "honest (θ fixed without test labels)",
    "paper": ("paper (the reference's protocol, uses test labels): error maps min-max normalised over the "
              "block's test dataset, one θ maximising mean DSC on its labels"),
    "iterative_mask": "IterMask's own final iterative mask (no threshold on the error map)",
}
HONEST_TEXT = {  # where the honest θ came from (evaluate.py column threshold_source)
    "healthy_fpr": ("the healthy validation voxels' error quantile at the configured false-positive rate "
                    "(evaluation.honest_fpr)"),
    "labelled_val": ("the θ of best mean DSC on the test dataset's labelled validation subjects (split "
                     "val_lesion, outside the test set), searched as the paper protocol searches"),
}
ORACLE_TEXT = {
    "itermask": "IterMask's own per-image best iteration/τ of the shrinking process (mask_oracle)",
    "itermask_final": "IterMask's τ raised further at the final iteration (the best θ >= τ on the final error map)",
    "error_map": "the best threshold of the error map per image",
}


def format_cell(cell: Cell, digits: int, with_sd: bool = True) -> str:
    if cell.absent:
        return "–"
    if cell.k == 0 or not math.isfinite(cell.mean):
        return "n/a"
    text = f"{cell.mean:.{digits}f}"
    if with_sd and cell.n > 1 and math.isfinite(cell.sd):
        text += f" ± {cell.sd:.{digits}f}"
    return text if cell.k == cell.n else f"{text} ({cell.k}/{cell.n})"


def _protocol_text(protocol: str, rows: list[Row]) -> str:
    """A protocol's caption text; the honest one names its threshold source(s)."""
    text = PROTOCOL_TEXT.get(protocol, protocol)
    sources = sorted({f for r in rows if r.protocol == protocol for f in r.threshold_sources})
    if protocol == "honest" and sources:
        text += ": " + "; ".join(HONEST_TEXT.get(f, f) for f in sources)
    return text


def _by_row_text(title: str, texts: Mapping[str, str], rows: list[Row]) -> str:
    """'<title>: A | B: text; C: text.' for the white rows (rows with the same text named together,
    labels separated by ' | ' since a label may hold a comma); "" when no white row has a text."""
    white = {r.label for r in rows if not r.grey}
    groups: dict[str, list[str]] = {}
    for label, text in texts.items():
        if label in white:
            groups.setdefault(text, []).append(label)
    if not groups:
        return ""
    return f"{title}: " + "; ".join(f"{' | '.join(labels)}: {text}" for text, labels in groups.items()) + "."


def _subjects_text(rows: list[Row]) -> str:
    """The cells' statistic and each white row's number of subjects per block (n)."""
    n = {r.label: max((c.n for cells in r.cells.values() for c in cells.values()), default=0) for r in rows}
    counts = {label: f"n = {v}" for label, v in n.items() if v}
    text = "Cells: mean ± SD (population SD, ddof 0) over the block's test subjects; (k/n): defined for k of n"
    if len({counts[r.label] for r in rows if not r.grey and r.label in counts}) > 1:
        return text + ". " + _by_row_text("Test subjects per block", counts, rows)
    shown = next((counts[r.label] for r in rows if r.label in counts), "")
    return text + (f" ({shown} per block)." if shown else ".")


def _left_out_text(rows: list[Row]) -> str:
    """Which white rows lack results for some lesion subjects, how many and why."""
    texts = {}
    for r in rows:
        if r.left_out:
            k = sum(len(v) for v in r.left_out.values())
            texts[r.label] = f"{k} lesion subject(s) without a result ({'; '.join(sorted(r.left_out_reasons))})"
    return _by_row_text("Left out", texts, rows)


def _scans_text(spec: dict[str, Any], rows: list[Row]) -> str:
    """The scans behind each detection block: anomalous against healthy (AUROC moves in steps of 1/(a·h))."""
    labels = {b["key"]: b["label"] or b["key"] for b in spec["blocks"]}
    counts: dict[tuple[int, int], list[str]] = {}
    for key in labels:
        seen = {r.scans[key] for r in rows if key in r.scans}
        for c in seen:
            counts.setdefault(c, []).append(labels[key])
    if not counts:
        return ""
    if len(counts) == 1:
        ((a, h),) = counts
        return f" Each block: {a} anomalous against {h} healthy test scans (AUROC moves in steps of {100 / (a * h):.3g})."
    return " Scans, anomalous against healthy: " + "; ".join(
        f"{' | '.join(blocks)}: {a} against {h}" for (a, h), blocks in counts.items()) + "."


def _paper_rows_text(spec: dict[str, Any], paper_rows: Sequence[str]) -> str:
    """Which rows the paper did not print, and which printed rows the table does not have
    (rows matched by the paper's label: ``published_label``, else ``label``)."""
    printed = list(dict.fromkeys(paper_rows))
    ours = {(r["published_label"] or r["label"]) for r in spec["rows"]}
    extra = [r["label"] for r in spec["rows"] if (r["published_label"] or r["label"]) not in printed]
    missing = [r for r in printed if r not in ours]
    parts = []
    if extra:
        parts.append("Rows not in the paper: " + " | ".join(extra) + ".")
    if missing:
        parts.append("The paper's rows not run here: " + " | ".join(missing) + ".")
    return " ".join(parts)


def caption(spec: dict[str, Any], rows: list[Row], context: Mapping[str, Any] | None = None,
            paper_rows: Sequence[str] | None = None) -> str:
    """The spec's caption plus what ``context`` (spec.caption_context) states: each row's
    training and settings, the blocks' anomaly parameters, the lesion size bins; the rows it
    has beyond or lacks from the paper's (``paper_rows``: the published rows' labels; None: no
    published table); protocols, threshold sources, convergence, metric definitions and absent cells."""
    context = context or {}
    training, settings, anomalies = (context.get(k) for k in ("training", "settings", "anomalies"))
    parts = [spec["caption"].strip()] if spec["caption"].strip() else []
    parts += [t for t in (_paper_rows_text(spec, paper_rows) if paper_rows is not None else "",
                          _by_row_text("Training", training or {}, rows), _by_row_text("Settings", settings or {}, rows))
              if t]
    bins = context.get("size_bins")
    if bins and any(m in SIZE_METRICS for m in spec["metrics"]):
        parts.append(f"Lesion size classes (evaluation.size_bins): small < {bins[0]}, medium {bins[0]}–{bins[1]}, "
                     f"large > {bins[1]} voxels (2D: pixels).")
    if spec["kind"] == "segmentation":
        protocols = list(dict.fromkeys(r.protocol for r in rows if not r.grey))
        parts += [f"Threshold ({p}): {_protocol_text(p, rows)}." for p in protocols]
        grey = [r for r in rows if r.grey]
        if grey:
            sources = sorted({o for r in grey for o in r.oracle}) or ["none evaluated yet"]
            parts.append("Grey rows (†): per-image best, an oracle that uses the test labels: "
                         + "; ".join(ORACLE_TEXT.get(o, o) for o in sources) + ".")
        parts += [t for t in (convergence_text(rows), inpainting_text(rows), _subjects_text(rows),
                              _left_out_text(rows)) if t]
        parts.append("Bold: the best white row of a column among the rows of its protocol, counting only cells "
                     "defined for all n subjects.")
    else:
        parts.append("Detection: one score per scan (the experiment's primary score), anomalous scans of the "
                     "block against the healthy test scans of the same test dataset." + _scans_text(spec, rows))
        if anomalies:
            labels = {b["key"]: b["label"] or b["key"] for b in spec["blocks"]}
            parts.append("Anomalies: " + "; ".join(f"{labels[k]}: {t}" for k, t in anomalies.items()) + ".")
        conv = convergence_text(rows, "test scans of the table")
        if conv:
            parts.append(conv)
    defs = list(dict.fromkeys(DEFINITIONS[m] for m in spec["metrics"]))
    parts.append("Metrics: " + "; ".join(defs) + ".")
    if set(spec["metrics"]) & set(UNIT_DEPENDENT):
        parts.append(UNITS_TEXT + ".")
    for row in spec["rows"]:
        for key, reason in row["absent"].items():
            parts.append(f"– {row['label']} / {key}: {reason}.")
    return " ".join(parts)


def _header(spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    blocks, metrics = [""], ["Method"]
    for b in spec["blocks"]:
        for i, m in enumerate(spec["metrics"]):
            blocks.append((b["label"] or b["key"]) if i == 0 else "")
            metrics.append(METRICS[m][0])
    return blocks, metrics


def body(spec: dict[str, Any], rows: list[Row]) -> list[list[str]]:
    """Formatted cells, best white row per column as ``**x**``, grey labels marked ``†``."""
    flags = {(b["key"], m): best_flags(rows, b["key"], m) for b in spec["blocks"] for m in spec["metrics"]}
    out = []
    for i, row in enumerate(rows):
        line = [row.label + (" †" if row.grey else "")]
        for b in spec["blocks"]:
            for m in spec["metrics"]:
                text = format_cell(row.cells[b["key"]][m], METRICS[m][3], spec["kind"] != "detection")
                line.append(f"**{text}**" if flags[(b["key"], m)][i] else text)
        out.append(line)
    return out


def _markdown(title: str, text: str, spec: dict[str, Any], lines: list[list[str]]) -> str:
    blocks, metrics = _header(spec)
    md = [f"# {title}", "", text, "", "| " + " | ".join(blocks) + " |", "|" + "|".join(["---"] * len(blocks)) + "|",
          "| " + " | ".join(metrics) + " |"]
    md += ["| " + " | ".join(r) + " |" for r in lines]
    return "\n".join(md + [""])


_TEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "^": r"\textasciicircum{}",
        "~": r"\textasciitilde{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "±": r"$\pm$"}


def _tex_escape(text: str) -> str:
    """LaTeX-safe text: each of \\ { } $ ^ ~ & % # _ escaped in one pass (± -> $\\pm$)."""
    return "".join(_TEX.get(ch, ch) for ch in text)


def _tex_cell(cell: str) -> str:
    if cell.startswith("**") and cell.endswith("**"):
        return r"\textbf{" + _tex_escape(cell[2:-2]) + "}"
    return _tex_escape(cell)


def _latex(name: str, text: str, spec: dict[str, Any], rows: list[Row], lines: list[list[str]]) -> str:
    n = len(spec["metrics"])
    blocks = " & ".join(r"\multicolumn{" + str(n) + "}{c}{" + _tex_escape(b["label"] or b["key"]) + "}"
                        for b in spec["blocks"])
    out = ["% needs \\usepackage{booktabs} and \\usepackage[table]{xcolor}", r"\begin{table}[ht]", r"\centering",
           r"\small", r"\caption{" + _tex_escape(text) + "}", r"\label{tab:" + name.replace("_", "-") + "}",
           r"\begin{tabular}{l" + "r" * n * len(spec["blocks"]) + "}", r"\toprule", " & " + blocks + r" \\",
           " & ".join(_tex_escape(h) for h in _header(spec)[1]) + r" \\", r"\midrule"]
    for row, line in zip(rows, lines):
        out.append((r"\rowcolor{gray!20} " if row.grey else "") + " & ".join(_tex_cell(c) for c in line) + r" \\")
    return "\n".join(out + [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""])


def make_table(spec: dict[str, Any], metrics: dict[str, list[str]], out_md: str, out_csv: str, out_tex: str,
               context: Mapping[str, Any] | None = None, paper_rows: Sequence[str] | None = None) -> list[Row]:
    """Stage: table ``spec`` from experiment -> [segmentation.tsv, detection.tsv, scores.tsv]; returns its rows.
    ``context``, ``paper_rows``: what the caption states (`caption`)."""
    rows = build(spec, metrics)
    text = caption(spec, rows, context, paper_rows)
    lines = body(spec, rows)
    write_text(out_md, _markdown(spec["title"] or spec["name"], text, spec, lines))
    write_table(wide_frame(spec, rows), out_csv)
    write_text(out_tex, _latex(spec["name"], text, spec, rows, lines))
    return rows


def table_stage(spec: dict[str, Any], metrics: dict[str, list[str]], published: str | None,
                out: Mapping[str, str], context: Mapping[str, Any]) -> list[Row]:
    """Stage (rule ``table``): the table (``out`` md, csv, tex; caption ``context`` from
    spec.caption_context) and its published-vs-reproduced comparison (``out`` vs_md, vs_csv)
    against the ``published`` CSV (None: no published table), rows under the paper's labels."""
    paper = read_published(published)["row"].tolist() if published and Path(published).exists() else None
    rows = make_table(spec, metrics, out["md"], out["csv"], out["tex"], context, paper)
    aliases = {row["label"]: row["published_label"] for row in spec["rows"] if row["published_label"]}
    write_comparison(spec["name"], out["csv"], published, out["vs_md"], out["vs_csv"], aliases)
    return rows
