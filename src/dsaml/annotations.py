"""A listener's annotation file (CSV, or the JSON `dsaml predict` writes) as labels on the song's model steps.

`read_annotations` checks the file (columns, a regular 0.5 s grid, numbers); `align_annotations` pairs it with
the song's step features through `dsaml.alignment.align`, with errors that name the annotation file.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dsaml.alignment import AlignedSong, AnnotationError, align

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["align_annotations", "read_annotations"]


def read_annotations(path: str | os.PathLike, step_seconds: float = 0.5) -> dict:
    """Read an annotation curve: `{"start_seconds", "arousal", "valence"}`.

    Accepted formats:
      * CSV with columns `time` (or `time_seconds`; seconds at the START of each 0.5 s step), `arousal`, `valence`;
      * the JSON written by `dsaml predict` (`{"time_seconds": [...], "arousal": [...], "valence": [...]}`), so a
        prediction can be corrected by hand and fed back.
    Times must form a regular grid of `step_seconds` (they may start later than 0, e.g. DEAM's 15 s).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, list):
                data = pd.DataFrame(data).to_dict(orient="list")
            frame = pd.DataFrame({k: data[k] for k in data if k in ("time", "time_seconds", "arousal", "valence")})
        else:
            frame = pd.read_csv(path, sep=None, engine="python")
    except (ValueError, KeyError, TypeError, csv.Error, pd.errors.ParserError) as exc:  # csv: e.g. an empty file
        raise AnnotationError(f"{path}: cannot read the annotation ({exc or type(exc).__name__})") from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    time_col = "time" if "time" in frame.columns else "time_seconds" if "time_seconds" in frame.columns else None
    missing = [c for c in ("arousal", "valence") if c not in frame.columns] + ([] if time_col else ["time"])
    if missing:
        raise AnnotationError(
            f"{path}: missing column(s) {missing}; expected `time` (seconds), `arousal`, `valence` "
            f"(found {list(frame.columns)})"
        )
    if len(frame) == 0:
        raise AnnotationError(f"{path}: the annotation has no rows")
    try:
        times = frame[time_col].to_numpy(dtype=np.float64)
        arousal = frame["arousal"].to_numpy(dtype=np.float32)
        valence = frame["valence"].to_numpy(dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise AnnotationError(f"{path}: non-numeric values ({exc})") from exc
    if not np.isfinite(times).all():
        raise AnnotationError(f"{path}: missing or non-finite time values")
    expected = times[0] + step_seconds * np.arange(times.size)
    off = np.flatnonzero(np.abs(times - expected) > 1e-3)
    if off.size:
        i = int(off[0])
        raise AnnotationError(
            f"{path}: times must be a regular {step_seconds} s grid (one row per step); row {i} has time "
            f"{times[i]:g} s, expected {expected[i]:g} s"
        )
    return {"start_seconds": round(float(times[0]), 6), "arousal": arousal, "valence": valence}


def align_annotations(
    patches: torch.Tensor,
    annotation: Mapping,
    *,
    step_seconds: float,
    song_id: str,
    annotator: str = "",
    value_range: tuple[float, float] | None = (-1.0, 1.0),
    annotation_name: str | None = None,
    harmonic: torch.Tensor | None = None,
) -> AlignedSong:
    """`dsaml.alignment.align` for an annotation read by `read_annotations`; errors name the annotation file."""
    try:
        return align(
            patches, arousal=annotation["arousal"], valence=annotation["valence"],
            start_seconds=annotation["start_seconds"], frame_rate=1.0 / step_seconds, step_seconds=step_seconds,
            song_id=song_id, annotator=annotator, value_range=value_range, harmonic=harmonic,
        )
    except AnnotationError as exc:
        if annotation_name:
            raise AnnotationError(f"{annotation_name}: {exc}") from exc
        raise
