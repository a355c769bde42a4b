"""Builders of small sources in the official DEAM and PMEmo layouts, for the dataset tests.

Everything is generated here (tiny low-rate audio, CSVs shaped like the releases' files, with deliberate
defects); the real data in ../shared/data is used only by tests marked `shared_data`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

AUDIO_RATE = 8000  # low rate: small, fast files (the builders only read headers)
DEAM_AVERAGED = "DEAM_Annotations/annotations/annotations averaged per song/dynamic (per second annotations)"
DEAM_RATER = "DEAM_Annotations/annotations/annotations per each rater/dynamic (per second annotations)"


def shared_data_dir() -> Path | None:
    """$DSAML_SHARED_DATA, or ../shared/data beside the checkout (CI clones the repo with shared/ beside it)."""
    for candidate in (os.environ.get("DSAML_SHARED_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def require_shared_data() -> Path:
    root = shared_data_dir()
    if root is None:
        pytest.skip("shared data not available (set DSAML_SHARED_DATA or place shared/data beside the repo)")
    return root


def write_audio(path: Path, seconds: float, *, rate: int = AUDIO_RATE, seed: int = 0, silent: bool = False) -> Path:
    """A tone with a little noise (never silent unless asked), in the format given by the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    wave = np.zeros_like(t) if silent else 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)
    fmt = {".mp3": "MP3", ".flac": "FLAC", ".wav": "WAV", ".ogg": "OGG"}[path.suffix.lower()]
    sf.write(path, wave.astype(np.float32), rate, format=fmt)
    return path


_AUDIO_CACHE: dict[tuple[float, str], Path] = {}


def audio_copy(path: Path, seconds: float, cache_dir: Path) -> Path:
    """`write_audio` through a per-duration cache: MP3 encoding is the slow part of building fixtures."""
    key = (round(seconds, 3), path.suffix.lower())
    cached = _AUDIO_CACHE.get(key)
    if cached is None or not cached.is_file():
        cached = write_audio(cache_dir / f"{seconds:.3f}{path.suffix}", seconds)
        _AUDIO_CACHE[key] = cached
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, path)
    return path


def wide_csv(path: Path, id_column: str | None, rows: list[tuple[str, list]], *, columns: int | None = None,
             start_ms: int = 15000, step_ms: int = 500, spaces: bool = False) -> Path:
    """A DEAM-style wide file: header `<id_column>,sample_15000ms,...`, rows padded with empty trailing cells.
    A value None is written as an empty cell; strings are written as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or max(len(values) for _, values in rows)
    header = ([id_column] if id_column else []) + [f"sample_{start_ms + k * step_ms}ms" for k in range(columns)]
    sep = ", " if spaces else ","
    lines = [sep.join(header)]
    for key, values in rows:
        cells = ["" if v is None else v if isinstance(v, str) else f"{v:.6g}" for v in values]
        cells += [""] * (columns - len(values))
        lines.append(sep.join(([key] if id_column else []) + cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def curve(n: int, seed: int, scale: float = 0.4) -> list[float]:
    """A smooth, clearly non-flat curve in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 2.0
    return list(np.clip(scale * np.sin(t / 3 + rng.uniform(0, 6)) + 0.05 * rng.standard_normal(n), -1, 1))


def build_deam_source(root: Path, audio_cache: Path) -> dict:
    """A DEAM release in miniature, with one instance of every defect the builder must handle.

    averaged: train songs 1001-1020 (60 frames), test songs 2001-2003 (64/70/75 frames, empty trailing
    cells), and defective songs 1021 (NaN inside), 1022 (arousal 1.5), 1026 (valence -1.5), 1023 (non-numeric), 1024 (audio 20 s
    for a 45 s annotation), 1025 (no audio file), 2004 (arousal 80 frames, valence 79: trimmed, kept).
    per rater (WorkerId files for 1001-1020 and 2001-2003; 1019-1020 without WorkerId):
      "A1" 18 train songs; "B-2" 17 train songs (hyphen: sanitized split name), of which 1003 is flat;
      "C3" 5 songs (too few); "A1" twice in 1001's file (duplicate); "T1" on the 3 test songs;
      "Z9" on song 5 (id <= 1000: not used by the official protocol).
    """
    averaged = root / DEAM_AVERAGED
    rater = root / DEAM_RATER
    audio = root / "MEMD_audio"
    train = [str(i) for i in range(1001, 1021)]
    test_lengths = {"2001": 64, "2002": 70, "2003": 75}
    a_rows, v_rows = [], []
    for i, song in enumerate(train):
        a_rows.append((song, curve(60, i)))
        v_rows.append((song, curve(60, 100 + i)))
    for j, (song, n) in enumerate(test_lengths.items()):
        a_rows.append((song, curve(n, 200 + j)))
        v_rows.append((song, curve(n, 300 + j)))
    bad_nan = curve(60, 50)
    bad_nan[10] = None
    a_rows += [("1021", bad_nan), ("1022", curve(59, 51) + [1.5]), ("1023", curve(30, 52) + ["abc"] + curve(29, 53)),
               ("1024", curve(60, 54)), ("1025", curve(60, 55)), ("2004", curve(80, 56)), ("1026", curve(60, 57))]
    v_rows += [("1021", curve(60, 60)), ("1022", curve(60, 61)), ("1023", curve(60, 62)),
               ("1024", curve(60, 64)), ("1025", curve(60, 65)), ("2004", curve(79, 66)),
               ("1026", curve(59, 67) + [-1.5])]
    wide_csv(averaged / "arousal.csv", "song_id", a_rows, spaces=True)
    wide_csv(averaged / "valence.csv", "song_id", v_rows, columns=80)

    for song in train + ["1021", "1022", "1023", "1026"]:
        audio_copy(audio / f"{song}.mp3", 45.0, audio_cache)
    for song, n in test_lengths.items():
        audio_copy(audio / f"{song}.mp3", 15.0 + n / 2 + 0.3, audio_cache)
    audio_copy(audio / "2004.mp3", 55.5, audio_cache)
    audio_copy(audio / "1024.mp3", 20.0, audio_cache)

    raters = _deam_raters(rater, train, test_lengths)
    audio_copy(audio / "5.mp3", 45.0, audio_cache)
    return {
        "train_ok": train, "test_lengths": test_lengths,
        "first_A1_1001": raters["1001"]["A1"],
    }


def _deam_raters(rater: Path, train: list[str], test_lengths: dict[str, int]) -> dict:
    """The per-rater files of `build_deam_source` (its docstring lists the raters and their defects)."""
    raters: dict[str, dict[str, tuple[list, list]]] = {}
    for k, song in enumerate(train):
        raters.setdefault(song, {})
        if k < 20:  # 1019-1020 are in files without WorkerId: A1 keeps 18 songs
            raters[song]["A1"] = (curve(60, 1000 + k), curve(60, 1100 + k))
        if 1 <= k < 18:
            flat = song == "1003"
            raters[song]["B-2"] = ([0.2] * 60 if flat else curve(60, 1200 + k), curve(60, 1300 + k))
        if k < 5:
            raters[song]["C3"] = (curve(60, 1400 + k), curve(60, 1500 + k))
    for j, (song, n) in enumerate(test_lengths.items()):
        raters[song] = {"T1": (curve(n, 1600 + j), curve(n, 1700 + j))}
    for song, by_rater in raters.items():
        with_id = song not in ("1019", "1020")
        for dim, index in (("arousal", 0), ("valence", 1)):
            rows = [(r, values[index]) for r, values in by_rater.items()]
            if song == "1001":
                rows.append(("A1", curve(60, 9999)))  # duplicate rater: the first row wins
            if with_id:
                wide_csv(rater / dim / f"{song}.csv", "WorkerId", rows)
            else:
                wide_csv(rater / dim / f"{song}.csv", None, rows)
    for dim in ("arousal", "valence"):
        wide_csv(rater / dim / "5.csv", "WorkerId", [("Z9", curve(60, 7))])
    return raters


def build_pmemo_source(root: Path, audio_cache: Path, *, per_subject: bool = True) -> dict:
    """A PMEmo2019 folder in miniature: 23 annotated songs (ids 1..24 except 11), 2 of the 27 unannotated
    ids present as clips (11, 64), one song (23) with NaN inside, one (24) with a value 1.2, one with audio
    too short (22), one without audio (21); per-subject long-format annotations for 3 subjects (S1 on 18
    songs, S2 on 17 with a duplicated frame row on song 2, S3 on 4 songs)."""
    import pandas as pd

    base = root / "PMEmo2019"
    songs = [str(i) for i in range(1, 25) if i != 11]
    rows, raw = [], []
    rng = np.random.default_rng(0)
    for i, song in enumerate(songs):
        n = 40 + i % 5
        a = np.clip(0.5 + 0.3 * np.sin(np.arange(n) / 4 + i) + 0.02 * rng.standard_normal(n), 0, 1)
        v = np.clip(0.5 + 0.3 * np.cos(np.arange(n) / 5 + i) + 0.02 * rng.standard_normal(n), 0, 1)
        if song == "23":
            a[5] = np.nan
        if song == "24":
            v[3] = 1.2
        for k in range(n):
            rows.append({"musicId": int(song), "frameTime": 15.0 + k / 2, "Arousal(mean)": a[k], "Valence(mean)": v[k]})
        for s, (first, last) in {"S1": (0, 18), "S2": (1, 18), "S3": (0, 4)}.items():
            if first <= i < last:
                for k in range(n):
                    raw.append({"musicId": int(song), "subjectId": s, "frameTime": 15.0 + k / 2,
                                "Arousal": float(np.clip(a[k] + 0.1, 0, 1)) if not np.isnan(a[k]) else 0.5,
                                "Valence": float(np.clip(1 - v[k], 0, 1))})
                if s == "S2" and song == "2":  # S2 entered song 2 twice: a duplicated frame row
                    raw.append({**raw[-1]})
        seconds = 15.0 + n / 2 + 0.4
        if song == "22":
            seconds = 20.0
        if song != "21":
            audio_copy(base / "chorus" / f"{song}.mp3", seconds, audio_cache)
    for unannotated in ("11", "64"):
        audio_copy(base / "chorus" / f"{unannotated}.mp3", 14.0, audio_cache)
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(base / "annotations" / "dynamic_annotations.csv", index=False)
    meta = [{"musicId": int(s), "fileName": f"{s}.mp3", "title": f"song {s}"} for s in songs + ["11", "64"]]
    pd.DataFrame(meta).to_csv(base / "metadata.csv", index=False)
    if per_subject:
        raw_dir = base / "annotations" / "dynamic_raw_annotations"
        raw_dir.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(raw).to_csv(raw_dir / "dynamic_raw_annotations.csv", index=False)
    return {"songs": songs}


# -- session-wide sources: built once per test run, whichever test module asks first -----------------------
_BUILT: dict[tuple[str, str], tuple[Path, dict]] = {}


def cached_source(tmp_path_factory, name: str, builder, **kwargs) -> tuple[Path, dict]:
    """`builder(root, audio_cache, **kwargs)` run once per session (fixtures imported by several modules
    are separate pytest fixtures; this cache makes them share one build)."""
    key = (str(tmp_path_factory.getbasetemp()), name)
    if key not in _BUILT:
        root = tmp_path_factory.mktemp(name)
        _BUILT[key] = (root, builder(root, tmp_path_factory.mktemp("audio-cache"), **kwargs))
    return _BUILT[key]


@pytest.fixture(scope="session")
def deam_source(tmp_path_factory) -> tuple[Path, dict]:
    return cached_source(tmp_path_factory, "deam-source", build_deam_source)


@pytest.fixture(scope="session")
def deam_built(tmp_path_factory, deam_source) -> Path:
    """The DEAM fixture built with default options."""
    from dsaml.datasets_scripts import build_deam

    def build(root, _cache):
        return {"output": build_deam(deam_source[0], root / "deam")}

    return cached_source(tmp_path_factory, "deam-built", build)[1]["output"]


@pytest.fixture(scope="session")
def pmemo_source(tmp_path_factory) -> tuple[Path, dict]:
    return cached_source(tmp_path_factory, "pmemo-source", build_pmemo_source)


@pytest.fixture(scope="session")
def synthetic_tiny(tmp_path_factory) -> Path:
    """The `tiny` synthetic dataset (seed 0), built once."""
    from dsaml.datasets_scripts import build_synthetic

    def build(root, _cache):
        return {"output": build_synthetic(root / "synthetic", size="tiny", seed=0)}

    return cached_source(tmp_path_factory, "synthetic-tiny", build)[1]["output"]


def hf_cache(tmp_path_factory) -> str:
    """A per-session `datasets` cache, so tests never read or fill the user's."""
    return str(tmp_path_factory.getbasetemp() / "hf-datasets-cache")
