"""A listener's annotation file (CSV, or the JSON `dsaml predict` writes) read into a curve on a 0.5 s grid.

`read_annotations` checks the file (size, text, columns, numbers, a regular 0.5 s grid);
`dsaml.data.alignment.align_annotations` pairs the curve with a song's step features. An annotation file is untrusted input (an upload in the demo): it is parsed here, line by line, with every
size bounded before anything is allocated for it, never by a general-purpose sniffer that reads it whole.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dsaml.errors import AnnotationError

__all__ = ["MAX_ANNOTATION_BYTES", "MAX_ANNOTATION_STEPS", "read_annotations"]

# Six hours at 2 Hz: longer than any song a listener annotates in one sitting.
MAX_ANNOTATION_STEPS = 43_200
# A row of three numbers takes under 80 bytes in any tool's CSV, and `dsaml predict`'s JSON about 60 per step:
# 8 MiB holds six hours with room to spare. Larger files are refused unread.
MAX_ANNOTATION_BYTES = 8 * 1024 * 1024
MAX_LINE_CHARS = 4096  # a header of a few dozen named columns fits; a row of three numbers needs ~80
MAX_COLUMNS = 64
_DELIMITERS = (",", ";", "\t", "|")
_TIME_COLUMNS = ("time", "time_seconds")


def read_annotations(path: str | os.PathLike, step_seconds: float = 0.5) -> dict:
    """Read an annotation curve: `{"start_seconds", "arousal", "valence"}`.

    Accepted formats:
      * CSV (or `;` / tab / `|` separated text) with columns `time` (or `time_seconds`; seconds at the START of
        each 0.5 s step), `arousal`, `valence`, other columns ignored;
      * the JSON written by `dsaml predict` (`{"time_seconds": [...], "arousal": [...], "valence": [...]}`), so
        a prediction can be corrected by hand and fed back.
    Times must form a regular grid of `step_seconds` (they may start later than 0, e.g. DEAM's 15 s). Files over
    `MAX_ANNOTATION_BYTES`, lines over `MAX_LINE_CHARS`, more than `MAX_COLUMNS` columns or `MAX_ANNOTATION_STEPS`
    rows are refused with an `AnnotationError` naming the file, before they are parsed further.
    """
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() == ".json":
        columns = _json_columns(text, path)
    else:
        columns = _csv_columns(text, path)
    return _curve(columns, path, step_seconds)


def _read_text(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found") from None
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read the annotation file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise AnnotationError(f"{path}: is a folder, not an annotation file")
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
        raise AnnotationError(f"{path}: is not a regular file (a pipe or a device); give a CSV or JSON file")
    if info.st_size > MAX_ANNOTATION_BYTES:
        raise AnnotationError(f"{path}: {info.st_size / 2**20:.1f} MiB is too large for an annotation (at most "
                              f"{MAX_ANNOTATION_BYTES // 2**20} MiB, {MAX_ANNOTATION_STEPS // 7200} hours at 2 Hz)")
    with path.open("rb") as handle:
        data = handle.read(MAX_ANNOTATION_BYTES + 1)  # the size may have changed since stat
    if len(data) > MAX_ANNOTATION_BYTES:
        raise AnnotationError(f"{path}: larger than {MAX_ANNOTATION_BYTES // 2**20} MiB, too large for an annotation")
    if not data.strip():
        raise AnnotationError(f"{path}: the annotation file is empty")
    if b"\x00" in data:
        raise AnnotationError(f"{path}: is binary (it holds NUL bytes), not a CSV or JSON text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: is not UTF-8 text (byte {exc.start} cannot be decoded)") from None


def _lines(text: str, path: Path) -> list[tuple[int, str]]:
    """(line number, line) of every non-blank line, each checked against the limits as it is read."""
    buffer = io.StringIO(text, newline=None)  # \r\n and \r end lines too
    lines: list[tuple[int, str]] = []
    number = 0
    while True:
        line = buffer.readline(MAX_LINE_CHARS + 1)
        if not line:
            return lines
        number += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            raise AnnotationError(f"{path}: line {number} is longer than {MAX_LINE_CHARS} characters; an annotation "
                                  "row holds a time, an arousal and a valence value")
        if line.strip():
            if len(lines) > MAX_ANNOTATION_STEPS:
                raise AnnotationError(f"{path}: more than {MAX_ANNOTATION_STEPS} rows (over "
                                      f"{MAX_ANNOTATION_STEPS // 7200} hours at 2 Hz); too long for an annotation")
            lines.append((number, line.rstrip("\n")))


def _csv_columns(text: str, path: Path) -> dict[str, list[str]]:
    lines = _lines(text, path)
    header_line = lines[0][1]
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    delimiter = max(_DELIMITERS, key=lambda d: counts[d]) if any(counts.values()) else ","
    rows = csv.reader((line for _, line in lines), delimiter=delimiter, skipinitialspace=True)
    try:
        header = [str(c).strip().lower() for c in next(rows)]
    except csv.Error as exc:
        raise AnnotationError(f"{path}: line {lines[0][0]}: cannot read the header ({exc})") from None
    if len(header) > MAX_COLUMNS:
        raise AnnotationError(f"{path}: {len(header)} columns (at most {MAX_COLUMNS}); expected `time` (seconds), "
                              "`arousal`, `valence`")
    wanted = _required_columns(header, path)
    columns: dict[str, list[str]] = {name: [] for name in wanted}
    for (number, _), fields in zip(lines[1:], rows):
        if len(fields) != len(header):
            raise AnnotationError(f"{path}: line {number} has {len(fields)} field(s), the header {len(header)}")
        for name, index in wanted.items():
            value = fields[index].strip()
            columns[name].append(value.replace(",", ".") if delimiter != "," else value)  # decimal commas
    if not columns["arousal"]:
        raise AnnotationError(f"{path}: the annotation has no rows")
    return columns


def _required_columns(header: list[str], path: Path) -> dict[str, int]:
    """`{"time": i, "arousal": j, "valence": k}`: where each needed column is, or an error listing what is there."""
    time = next((c for c in _TIME_COLUMNS if c in header), None)
    missing = [c for c in ("arousal", "valence") if c not in header] + ([] if time else ["time"])
    if missing:
        shown = header if len(header) <= 8 else header[:8] + ["..."]
        raise AnnotationError(f"{path}: missing column(s) {missing}; expected `time` (seconds), `arousal`, "
                              f"`valence` (found {shown})")
    return {"time": header.index(time), "arousal": header.index("arousal"), "valence": header.index("valence")}


def _json_columns(text: str, path: Path) -> dict[str, list]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise AnnotationError(f"{path}: not valid JSON ({str(exc)[:120]})") from None
    if isinstance(data, list):  # a list of {"time", "arousal", "valence"} records
        if len(data) > MAX_ANNOTATION_STEPS + 1 or not all(isinstance(r, dict) for r in data):
            raise AnnotationError(f"{path}: a JSON list must hold at most {MAX_ANNOTATION_STEPS} objects with "
                                  "`time`, `arousal` and `valence`")
        data = {key: [r.get(key) for r in data] for key in ("time", "time_seconds", "arousal", "valence")
                if data and key in data[0]}
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: the JSON must be an object with `time_seconds`, `arousal` and `valence` "
                              f"lists (as `dsaml predict` writes), got a {type(data).__name__}")
    header = [str(k).strip().lower() for k in data]
    wanted = _required_columns(header, path)
    keys = list(data)
    columns = {name: data[keys[index]] for name, index in wanted.items()}
    for name, values in columns.items():
        if not isinstance(values, list):
            raise AnnotationError(f"{path}: `{keys[wanted[name]]}` must be a list of numbers, got a "
                                  f"{type(values).__name__}")
        if len(values) > MAX_ANNOTATION_STEPS:
            raise AnnotationError(f"{path}: more than {MAX_ANNOTATION_STEPS} values (over "
                                  f"{MAX_ANNOTATION_STEPS // 7200} hours at 2 Hz); too long for an annotation")
    if not columns["arousal"]:
        raise AnnotationError(f"{path}: the annotation has no rows")
    return columns


def _numbers(values: list, name: str, path: Path, dtype) -> np.ndarray:
    out = np.empty(len(values), dtype=dtype)
    for i, value in enumerate(values):
        try:
            if isinstance(value, bool) or value is None or value == "":
                raise ValueError
            out[i] = float(value)
        except (TypeError, ValueError, OverflowError):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise AnnotationError(f"{path}: value {i + 1} of column `{name}` is not a number ({shown})") from None
    return out


def _curve(columns: Mapping[str, list], path: Path, step_seconds: float) -> dict:
    times = _numbers(columns["time"], "time", path, np.float64)
    arousal = _numbers(columns["arousal"], "arousal", path, np.float32)
    valence = _numbers(columns["valence"], "valence", path, np.float32)
    if not (len(times) == len(arousal) == len(valence)):
        raise AnnotationError(f"{path}: `time`, `arousal` and `valence` have {len(times)}, {len(arousal)} and "
                              f"{len(valence)} values; they must have one each per step")
    if not np.isfinite(times).all():
        raise AnnotationError(f"{path}: missing or non-finite time values")
    expected = times[0] + step_seconds * np.arange(times.size)
    off = np.flatnonzero(np.abs(times - expected) > 1e-3)
    if off.size:
        i = int(off[0])
        raise AnnotationError(
            f"{path}: times must be a regular {step_seconds} s grid (one row per step); row {i + 1} has time "
            f"{times[i]:g} s, expected {expected[i]:g} s"
        )
    if not math.isfinite(float(times[0])) or times[0] < 0:
        raise AnnotationError(f"{path}: the first time must be >= 0 s, got {times[0]:g}")
    return {"start_seconds": round(float(times[0]), 6), "arousal": arousal, "valence": valence}
