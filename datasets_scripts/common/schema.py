"""The row format every dsaml dataset folder shares (DEAM, PMEmo, synthetic; every config and split).

Training, personalization and evaluation code read exactly these columns; change them only together with that
code. One row is one (song, annotator) annotation: two aligned curves sampled at `frame_rate` Hz, the first
frame at `start_seconds` into the song's audio.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

AVERAGE_ANNOTATOR = "average"  # the `annotator` of rows holding a song's averaged (consensus) annotation
PARTITIONS = ("train", "validation", "test")
CONFIG_NAMES = ("dmer", "pdmer", "pdmer_flat")  # the configs a dsaml dataset folder may offer (`configs.py`)
FRAME_RATE = 2.0  # Hz: one label every 0.5 s (DEAM, PMEmo, synthetic)

COLUMNS = (
    "song_id",
    "annotator",
    "audio",
    "start_seconds",
    "frame_rate",
    "arousal",
    "valence",
    "partition",
    "annotator_info",
)
FEATURES_COLUMN = "features"  # optional: precomputed per-frame features (openSMILE), aligned with the labels


def arrow_schema(with_features: bool = False) -> pa.Schema:
    """The explicit Parquet schema: float32 everywhere (pyarrow would infer float64 from Python floats)."""
    fields = [
        pa.field("song_id", pa.string(), nullable=False),
        pa.field("annotator", pa.string(), nullable=False),
        pa.field("audio", pa.string(), nullable=False),
        pa.field("start_seconds", pa.float32(), nullable=False),
        pa.field("frame_rate", pa.float32(), nullable=False),
        pa.field("arousal", pa.list_(pa.float32()), nullable=False),
        pa.field("valence", pa.list_(pa.float32()), nullable=False),
        pa.field("partition", pa.string(), nullable=False),
        pa.field("annotator_info", pa.string(), nullable=False),
    ]
    if with_features:
        fields.append(pa.field(FEATURES_COLUMN, pa.list_(pa.list_(pa.float32())), nullable=False))
    return pa.schema(fields)


@dataclass
class Record:
    """One (song, annotator) annotation before it becomes a row; `audio` is filled in by the writer."""

    song_id: str
    annotator: str
    arousal: np.ndarray
    valence: np.ndarray
    start_seconds: float
    frame_rate: float = FRAME_RATE
    partition: str = "train"
    annotator_info: dict = field(default_factory=dict)
    features: np.ndarray | None = None  # [frames, dims]

    @property
    def num_frames(self) -> int:
        return int(self.arousal.shape[0])

    @property
    def end_seconds(self) -> float:
        """Time the last label frame ends: the audio must last at least this long."""
        return self.start_seconds + self.num_frames / self.frame_rate

    def with_partition(self, partition: str) -> Record:
        return Record(
            self.song_id, self.annotator, self.arousal, self.valence, self.start_seconds, self.frame_rate,
            partition, self.annotator_info, self.features,
        )


def records_to_table(records: list[Record], audio_paths: dict[str, str], with_features: bool) -> pa.Table:
    """Rows in the shared schema; `audio_paths` maps song_id to the `audio` column value."""
    columns = {
        "song_id": [r.song_id for r in records],
        "annotator": [r.annotator for r in records],
        "audio": [audio_paths[r.song_id] for r in records],
        "start_seconds": [float(r.start_seconds) for r in records],
        "frame_rate": [float(r.frame_rate) for r in records],
        "arousal": [np.asarray(r.arousal, dtype=np.float32) for r in records],
        "valence": [np.asarray(r.valence, dtype=np.float32) for r in records],
        "partition": [r.partition for r in records],
        "annotator_info": [json.dumps(r.annotator_info, sort_keys=True) for r in records],
    }
    if with_features:
        columns[FEATURES_COLUMN] = _nested_float32([r.features for r in records])
    return pa.table(columns, schema=arrow_schema(with_features))


def _nested_float32(matrices: list[np.ndarray]) -> pa.Array:
    """`[frames, dims]` matrices -> list<list<float32>> built from flat buffers (no per-value Python objects)."""
    mats = [np.asarray(m, dtype=np.float32).reshape(len(m), -1) for m in matrices]
    frame_lengths = np.concatenate([np.full(m.shape[0], m.shape[1], dtype=np.int32) for m in mats] or [np.zeros(0, np.int32)])
    frame_offsets = np.concatenate([[0], np.cumsum(frame_lengths)]).astype(np.int32)
    row_offsets = np.concatenate([[0], np.cumsum([m.shape[0] for m in mats])]).astype(np.int32)
    values = pa.array(np.concatenate([m.ravel() for m in mats] or [np.zeros(0, np.float32)]), type=pa.float32())
    frames = pa.ListArray.from_arrays(pa.array(frame_offsets), values)
    return pa.ListArray.from_arrays(pa.array(row_offsets), frames)


_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def sanitize_identifier(value: str) -> str:
    """ASCII letters, digits and `_` only: valid in a `datasets` split name (`^\\w+(\\.\\w+)*$`) and a file name."""
    cleaned = _UNSAFE.sub("_", str(value).strip()).strip("_")
    return cleaned or "unnamed"


def annotator_split_name(annotator: str) -> str:
    """The `pdmer` split holding one annotator's rows (before de-duplication, see `annotator_split_names`)."""
    return f"annotator_{sanitize_identifier(annotator)}"


def annotator_split_names(annotators: list[str]) -> dict[str, str]:
    """Split names for all annotators of a dataset, unique even when two ids sanitize alike (`a-b`, `a.b`)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for annotator in sorted(annotators):
        base = annotator_split_name(annotator)
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        names[annotator] = name
        taken.add(name)
    return names


_SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def audio_file_stem(song_id: str) -> str:
    """The file name stem of a song's audio in the dataset folder: the song id when it is a safe file name."""
    return song_id if _SAFE_FILE.match(song_id) and ".." not in song_id else sanitize_identifier(song_id)


def check_record(record: Record, value_range: tuple[float, float] | None) -> str | None:
    """What is wrong with a record's curves (a drop reason), or None when it is usable."""
    a, v = record.arousal, record.valence
    if a.ndim != 1 or v.ndim != 1 or a.size == 0:
        return "empty curve"
    if a.shape != v.shape:
        return "arousal and valence lengths differ"
    if not (np.isfinite(a).all() and np.isfinite(v).all()):
        return "NaN inside curve"
    if value_range is not None:
        low, high = value_range
        tol = 1e-6
        if min(a.min(), v.min()) < low - tol or max(a.max(), v.max()) > high + tol:
            return f"value outside [{low:g}, {high:g}]"
    if not (math.isfinite(record.start_seconds) and record.start_seconds >= 0):
        return "invalid start time"
    return None
