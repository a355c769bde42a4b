"""Aligning precomputed per-frame features (openSMILE, 260 dims every 0.5 s in DEAM and PMEmo) with labels."""

from __future__ import annotations

import numpy as np

from dsaml.datasets_scripts.common.report import DropReport
from dsaml.datasets_scripts.common.schema import Record

MAX_TRIMMED_FRAMES = 2  # a feature file may stop a frame or two before the annotation: trim the labels then


def align_features(times: np.ndarray, matrix: np.ndarray, start: float, rate: float, frames: int) -> np.ndarray:
    """Feature rows for label frames 0..frames-1 (frame k at `start + k / rate`), matched within a quarter
    frame; stops at the first label frame without a feature row (the caller checks the length)."""
    times = np.asarray(times, dtype=np.float64)
    index = np.rint((times - start) * rate)
    exact = np.abs(times - (start + index / rate)) < 0.25 / rate
    row_of: dict[int, int] = {}
    for row in np.flatnonzero(exact & (index >= 0)):
        row_of.setdefault(int(index[row]), int(row))
    rows = []
    for k in range(frames):
        if k not in row_of:
            break
        rows.append(row_of[k])
    return np.asarray(matrix, dtype=np.float32)[rows] if rows else np.zeros((0, matrix.shape[1]), np.float32)


def attach_features(
    records: list[Record], lookup, report: DropReport, scope: str
) -> list[Record]:
    """Give each record its song's aligned features. `lookup(song_id)` returns `(times, matrix)` or raises
    `LookupError` / `ValueError` with a message; songs without usable features are reported and dropped."""
    cache: dict[str, tuple[np.ndarray, np.ndarray] | str] = {}
    kept = []
    for record in records:
        if record.song_id not in cache:
            try:
                cache[record.song_id] = lookup(record.song_id)
            except (LookupError, ValueError, OSError) as exc:
                cache[record.song_id] = str(exc)
        entry = cache[record.song_id]
        who = f"song {record.song_id}, annotator {record.annotator}"
        if isinstance(entry, str):
            report.problem(scope, "features missing or unreadable", f"{who}: {entry}")
            continue
        aligned = align_features(entry[0], entry[1], record.start_seconds, record.frame_rate, record.num_frames)
        missing = record.num_frames - aligned.shape[0]
        if missing > MAX_TRIMMED_FRAMES or aligned.shape[0] == 0:
            report.problem(scope, "features shorter than annotation", f"{who}: {missing} label frames have no features")
            continue
        if missing:
            report.note("labels trimmed to the last feature frame", f"{who}: {missing} frame(s)")
            record = Record(
                record.song_id, record.annotator, record.arousal[: aligned.shape[0]], record.valence[: aligned.shape[0]],
                record.start_seconds, record.frame_rate, record.partition, record.annotator_info,
            )
        record.features = aligned
        kept.append(record)
    return kept
