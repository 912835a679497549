"""Checks of the config's tables that the schema cannot express: the names a block refers to (test
dataset, anomaly), the published CSV, and one test set per cell (METHOD.md §7: never pool two)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from itermask.config.conditions import FAILED_SKULLSTRIP
from itermask.errors import ConfigError

if TYPE_CHECKING:
    from itermask.config.study import Study


def _block_choices(study: "Study") -> tuple[list[str], list[str]]:
    """(test datasets, detection anomalies) a table block may name: the config's datasets and the
    derived failed-strip sets; the artefact conditions (types and severity levels), the failed
    skull-stripping condition where a set makes it, the user anomalies and 'all' (= null)."""
    cfg_datasets = study.config["datasets"]
    derived = [d for d in map(study.failed_strip_dataset, cfg_datasets) if d is not None]
    anomalies = [*study.artefact_conditions(), *([FAILED_SKULLSTRIP] if derived else []),
                 *(e["anomaly"] for e in cfg_datasets.values() if e.get("anomaly")), "all"]
    return [*cfg_datasets, *derived], list(dict.fromkeys(anomalies))


def check_table_references(study: "Study") -> None:
    """Each table block's ``dataset`` and (detection) ``anomaly``, and the table's ``published``
    CSV, exist: a wrong name would leave the cells, or the comparison, silently empty."""
    from itermask.evaluation.published import PUBLISHED_DIR, published_csv

    datasets, anomalies = _block_choices(study)
    for spec in study.config["tables"]:
        where = f"config key 'tables' ({spec['name']})"
        for block in spec["blocks"]:
            here = f"{where}, block '{block['key']}'"
            if block["dataset"] is not None and block["dataset"] not in datasets:
                raise ConfigError(f"{here}: dataset '{block['dataset']}' is not a dataset ({', '.join(datasets)})")
            if spec["kind"] == "detection" and block["anomaly"] is not None and block["anomaly"] not in anomalies:
                raise ConfigError(f"{here}: anomaly '{block['anomaly']}' is not a detection condition "
                                  f"({', '.join(anomalies)})")
            if block["dataset"] is None:
                _check_one_test_set(study, spec, block, here)
        stem = spec["published"]
        if stem is not None and not published_csv(stem).is_file():
            known = sorted(p.stem for p in PUBLISHED_DIR.glob("*.csv"))
            raise ConfigError(f"{where}, key 'published': '{stem}' is not a published table in {PUBLISHED_DIR.name}/ "
                              f"({', '.join(known)}; null: none)")


def _check_one_test_set(study: "Study", spec: dict, block: dict, here: str) -> None:
    """A block without ``dataset`` reads each cell's only test set of the table's kind: never pool
    two test sets under one cell (METHOD.md §7)."""
    from itermask.evaluation.spec import row_cells

    kind = "detect" if spec["kind"] == "detection" else "segment"
    for row in spec["rows"]:
        name = row_cells(spec, row).get(block["key"])
        found = getattr(study.settings(name), kind) if name in study.experiments else ()
        if len(found) > 1:
            raise ConfigError(f"{here}: no 'dataset', but experiment '{name}' has {len(found)} test sets to "
                              f"{kind} ({', '.join(found)}); name the block's dataset")
