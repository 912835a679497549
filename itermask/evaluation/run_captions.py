"""Caption sentences on what the runs behind a table did (from layout.Row): how many iterative
masks converged, and how much of the brain a diffusion baseline inpainted."""
from __future__ import annotations

from typing import Iterator

from itermask.evaluation.layout import Row


def _white_rows_once(rows: list[Row], attr: str) -> Iterator[tuple[Row, dict]]:
    """(row, its entries of ``attr`` not said by an earlier row) for the white rows with any: rows
    that share an experiment and block (other thresholds of the same run) say it once."""
    seen: set = set()
    for row in rows:
        new = {key: v for key, v in getattr(row, attr).items() if key not in seen}
        if row.grey or not new:
            continue
        seen |= set(new)
        yield row, new


def convergence_text(rows: list[Row], unit: str = "subjects") -> str:
    """How many subjects' iterative masks converged (change < tol before the iteration cap), per
    white row, and how many subject-specific taus came from the phase-A curve's first point;
    rows that share an experiment (other thresholds of the same run) said once."""
    texts, any_first = [], False
    for row, new in _white_rows_once(rows, "convergence"):
        k, n = sum(v[0] for v in new.values()), sum(v[1] for v in new.values())
        lo, hi = min(v[2] for v in new.values()), max(v[3] for v in new.values())
        its = f"{lo}–{hi}" if lo != hi else f"{hi}"
        note = "" if k == n else ("; all stopped at the cap" if k == 0 else f"; {n - k} stopped at the cap")
        first, fitted = sum(v[4] for v in new.values()), sum(v[5] for v in new.values())
        if first:
            any_first = True
            note += f"; τ at the phase-A curve's first point for {first} of {fitted}"
        texts.append(f"{row.label} {k}/{n} ({its} iterations{note})")
    if not texts:
        return ""
    text = f"Iterative masks converged (change < tol before the cap), {unit}: " + "; ".join(texts) + "."
    if any_first:
        text += (" (τ at the curve's first point: its slope already exceeds γ there, or never does, so nearly "
                 "the whole brain stays masked.)")
    return text


def inpainting_text(rows: list[Row]) -> str:
    """How much of the brain each white diffusion row inpainted (mean over its test scans; rows of
    the same experiment said once)."""
    texts = []
    for row, new in _white_rows_once(rows, "inpainting"):
        n = sum(v[1] for v in new.values())
        mean = sum(v[0] * v[1] for v in new.values()) / n
        texts.append(f"{row.label} {100 * mean:.0f} % ({n} scans)")
    if not texts:
        return ""
    return ("Inpainting masks (DDPM: the initial mask; AutoDDPM: the combined mask), mean fraction of the brain: "
            + "; ".join(texts) + ".")
