"""The three configs every dsaml dataset folder offers, assembled from records that carry their partition:

- `dmer`: averaged annotations, splits `train` / `validation` / `test` (the records' partitions);
- `pdmer`: the per-annotator records, one split per annotator (`annotator_<sanitized id>`);
- `pdmer_flat`: the same per-annotator records in splits `train` / `test` (+ `validation` when a builder
  holds annotators out for it), so training reads one split and groups by the `annotator` column.
"""

from __future__ import annotations

from collections import defaultdict

from dsaml.datasets_scripts.common.schema import CONFIG_NAMES, PARTITIONS, Record, annotator_split_names
from dsaml.datasets_scripts.common.writer import DatasetFolderWriter
from dsaml.errors import DatasetBuildError


def by_partition(records: list[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {p: [] for p in PARTITIONS}
    for record in records:
        groups.setdefault(record.partition, []).append(record)
    return {name: rows for name, rows in groups.items() if rows}


def by_annotator(records: list[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        groups[record.annotator].append(record)
    names = annotator_split_names(list(groups))
    return {names[a]: groups[a] for a in sorted(groups, key=lambda a: names[a])}


def check_configs(requested, available: set[str]) -> list[str]:
    """The configs to build: all available ones by default; an explicit request for an unavailable one fails."""
    if requested is None:
        return [c for c in CONFIG_NAMES if c in available]
    unknown = [c for c in requested if c not in CONFIG_NAMES]
    if unknown:
        raise ValueError(f"unknown config(s) {unknown}; choose from {list(CONFIG_NAMES)}")
    missing = [c for c in requested if c not in available]
    if missing:
        raise DatasetBuildError(f"config(s) {missing} cannot be built from this source (no per-annotator data found)")
    return [c for c in CONFIG_NAMES if c in requested]


def write_configs(
    writer: DatasetFolderWriter,
    configs: list[str],
    dmer: list[Record],
    pdmer: list[Record],
    with_features: bool = False,
) -> None:
    """Write the requested configs; `pdmer_flat` (or `dmer` without it) is the default config."""
    default = "pdmer_flat" if "pdmer_flat" in configs else "dmer" if "dmer" in configs else configs[0]
    if "dmer" in configs:
        writer.write_config("dmer", by_partition(dmer), with_features=with_features, default=default == "dmer")
    if "pdmer" in configs:
        writer.write_config("pdmer", by_annotator(pdmer), with_features=with_features, default=default == "pdmer")
    if "pdmer_flat" in configs:
        writer.write_config("pdmer_flat", by_partition(pdmer), with_features=with_features, default=True)
