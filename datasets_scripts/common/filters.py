"""The official per-annotator filters of the DSAML protocol (reference code `utils/DEAM/dataset.py`), shared by
every builder that has per-annotator data:

1. a (song, annotator) pair is dropped when its arousal OR its valence curve is flat: mean absolute deviation
   from its own mean over the first 60 values below 0.01 (idle or "set and forget" annotations);
2. an annotator is then dropped from a partition where they have fewer than `min_songs` songs left (official:
   "<= 15 songs" is dropped, i.e. min_songs=16, enough for 1 support + 15 query songs). The official code
   applies it to the train and the test set separately, so it is counted per (annotator, partition) here.
"""

from __future__ import annotations

from collections import defaultdict

from dsaml.datasets_scripts.common.curves import mean_absolute_deviation
from dsaml.datasets_scripts.common.report import DropReport
from dsaml.datasets_scripts.common.schema import Record

OFFICIAL_FLATNESS_THRESHOLD = 0.01
OFFICIAL_FLATNESS_FRAMES = 60
OFFICIAL_MIN_SONGS_PER_ANNOTATOR = 16


def drop_flat_curves(
    records: list[Record],
    report: DropReport,
    scope: str,
    threshold: float = OFFICIAL_FLATNESS_THRESHOLD,
    frames: int = OFFICIAL_FLATNESS_FRAMES,
) -> list[Record]:
    if threshold <= 0:
        return list(records)
    kept = []
    reason = f"flat curve (mean absolute deviation < {threshold:g} over the first {frames} frames)"
    for record in records:
        flat = [
            name
            for name, curve in (("arousal", record.arousal), ("valence", record.valence))
            if mean_absolute_deviation(curve, frames) < threshold
        ]
        if flat:
            report.filtered(scope, reason, f"song {record.song_id}, annotator {record.annotator}: {'/'.join(flat)}")
        else:
            kept.append(record)
    return kept


def drop_small_annotators(
    records: list[Record], report: DropReport, scope: str, min_songs: int = OFFICIAL_MIN_SONGS_PER_ANNOTATOR
) -> list[Record]:
    if min_songs <= 1:
        return list(records)
    songs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in records:
        songs[(record.annotator, record.partition)].add(record.song_id)
    small = {key for key, ids in songs.items() if len(ids) < min_songs}
    reason = f"annotator with fewer than {min_songs} songs in its partition"
    for annotator, partition in sorted(small):
        n = len(songs[(annotator, partition)])
        report.filtered(scope, reason, f"annotator {annotator} ({partition}): {n} songs", count=n)
    return [r for r in records if (r.annotator, r.partition) not in small]
