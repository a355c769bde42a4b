"""Reading annotation curves from "wide" CSV files: one row per song (or rater), one column per label frame.

DEAM stores its averaged and per-rater dynamic annotations this way: a header `song_id,sample_15000ms,
sample_15500ms,...` (or `WorkerId,sample_...`), rows as long as the longest song with empty trailing cells for
shorter songs, sometimes spaces after the commas. The frame times come from the header, never assumed.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dsaml.errors import CurveError, DatasetBuildError

_SAMPLE = re.compile(r"^sample_(\d+(?:\.\d+)?)ms$", re.IGNORECASE)


@dataclass
class WideTable:
    path: Path
    id_column: str | None  # first header cell when it is an id (song_id, WorkerId), None when rows have no id
    start_seconds: float
    frame_rate: float
    num_columns: int  # label columns in the header
    rows: list[tuple[int, str, list[str]]] = field(default_factory=list)  # (line number, id, value cells)


def _frame_times(cells: list[str], path: Path) -> tuple[float, float]:
    times = []
    for cell in cells:
        match = _SAMPLE.match(cell)
        if not match:
            raise DatasetBuildError(f"{path}: header column {cell!r} is not a frame time like 'sample_15000ms'")
        times.append(float(match.group(1)) / 1000.0)
    if not times:
        raise DatasetBuildError(f"{path}: the header has no frame columns ('sample_<ms>ms')")
    if len(times) == 1:
        raise DatasetBuildError(f"{path}: one frame column only; the frame rate cannot be derived from the header")
    steps = np.diff(times)
    step = float(steps[0])
    if step <= 0 or not np.allclose(steps, step, atol=1e-6):
        raise DatasetBuildError(f"{path}: frame times in the header are not evenly spaced")
    return times[0], 1.0 / step


def read_wide_csv(path: Path) -> WideTable:
    """Header and raw rows of a wide annotation file (values are parsed per row by `parse_curve`)."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetBuildError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with handle:
        reader = csv.reader(handle, skipinitialspace=True)
        try:
            header = [cell.strip() for cell in next(reader)]
        except StopIteration:
            raise DatasetBuildError(f"{path}: empty file (no header)") from None
        except csv.Error as exc:
            raise DatasetBuildError(f"{path}: malformed CSV header ({exc})") from exc
        while header and header[-1] == "":
            header.pop()
        has_id = bool(header) and not _SAMPLE.match(header[0])
        start, rate = _frame_times(header[1:] if has_id else header, path)
        table = WideTable(path, header[0] if has_id else None, start, rate, len(header) - int(has_id))
        try:
            for row in reader:
                cells = [cell.strip() for cell in row]
                if not any(cells):
                    continue
                if has_id:
                    table.rows.append((reader.line_num, cells[0], cells[1:]))
                else:
                    table.rows.append((reader.line_num, "", cells))
        except csv.Error as exc:
            raise DatasetBuildError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from exc
    return table


def parse_curve(cells: list[str], num_columns: int, where: str) -> np.ndarray:
    """Values of one row. Trailing empty cells are the end of a shorter song; an empty or NaN cell followed by
    values is a hole (`NaN inside curve`); anything non-numeric or beyond the header is `malformed row`."""
    values = list(cells)
    while values and values[-1] == "":
        values.pop()
    if not values:
        raise CurveError("empty curve", where)
    if len(values) > num_columns:
        raise CurveError("malformed row", f"{where}: {len(values)} values for {num_columns} header columns")
    out = np.empty(len(values), dtype=np.float64)
    for i, cell in enumerate(values):
        if cell == "":
            raise CurveError("NaN inside curve", f"{where}: empty value at frame {i} before the end of the curve")
        try:
            out[i] = float(cell)
        except ValueError:
            raise CurveError("malformed row", f"{where}: non-numeric value {cell!r} at frame {i}") from None
        if math.isnan(out[i]):
            raise CurveError("NaN inside curve", f"{where}: NaN at frame {i} before the end of the curve")
        if math.isinf(out[i]):
            raise CurveError("malformed row", f"{where}: infinite value at frame {i}")
    return out.astype(np.float32)


def pair_curves(
    arousal: np.ndarray, valence: np.ndarray, where: str, max_length_difference: int = 2
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Arousal and valence cut to their common length. Real DEAM rows differ by one frame at the end for a few
    songs (7 of the averaged 2015 songs); a larger difference means the two files disagree about the song."""
    if arousal.size == valence.size:
        return arousal, valence, False
    difference = abs(arousal.size - valence.size)
    if difference > max_length_difference:
        raise CurveError(
            "arousal and valence lengths differ",
            f"{where}: {arousal.size} arousal frames but {valence.size} valence frames",
        )
    n = min(arousal.size, valence.size)
    return arousal[:n], valence[:n], True


def mean_absolute_deviation(curve: np.ndarray, frames: int = 60) -> float:
    """The official flatness measure: mean |x - mean(x)| over the first `frames` values."""
    head = np.asarray(curve[:frames], dtype=np.float64)
    return float(np.mean(np.abs(head - head.mean()))) if head.size else 0.0
