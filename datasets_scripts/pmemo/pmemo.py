"""PMEmo2019 (Zhang et al., ICMR 2018; https://github.com/HuiZhangDB/PMEmo) -> dsaml folder.

`source` is the `PMEmo2019` folder of the release (or its parent). Read as distributed:

    annotations/dynamic_annotations.csv   musicId,frameTime,Arousal(mean),Valence(mean); 2 Hz from 15.0 s
    chorus/<musicId>.mp3                  the chorus clips the annotations refer to
    metadata.csv                          optional: lists every clip (used to report the unannotated ones)
    features/dynamic_features.csv         optional: musicId,frameTime + 260 openSMILE values (include_features)

Values are in [0, 1] and kept as they are (the card and build_report.json record `value_range`);
`rescale_to_minus1_1=True` maps them to [-1, 1] (2v - 1) like DEAM. 27 clips shorter than 15.5 s have no
dynamic annotation (`UNANNOTATED_IDS`); they are skipped and counted.

Per-listener dynamic annotations: the public PMEmo2019 archive documents only the averaged curves (and
their standard deviations); a request for each listener's dynamic annotations is open upstream
(HuiZhangDB/PMEmo issue #4). When per-subject curves are available they are read from
`annotations/dynamic_raw_annotations/*.csv` (or one `annotations/dynamic_raw_annotations.csv`) in LONG
format, one row per (song, subject, frame):

    musicId,subjectId,frameTime,Arousal,Valence

(column names matched case- and punctuation-insensitively; the subject column may also be called subject,
annotator, participant, WorkerId or userId). Only then are `pdmer` / `pdmer_flat` built. PMEmo has no
personalization protocol: subjects are split into meta-train and test LISTENERS by a seeded
`test_annotator_fraction` (partition "train" / "test"); the official DEAM filters apply with their defaults.
`dmer` is split by song: seeded `test_fraction` of the songs for test, `validation_fraction` of the rest for
validation.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dsaml.datasets_scripts.common.audio_files import index_audio, probe_durations
from dsaml.datasets_scripts.common.card import CardInfo
from dsaml.datasets_scripts.common.release import ReleaseBuild, ReleaseOptions
from dsaml.datasets_scripts.common.report import DropReport, logger
from dsaml.datasets_scripts.common.schema import AVERAGE_ANNOTATOR, FRAME_RATE, Record, check_record
from dsaml.datasets_scripts.common.splits import held_out
from dsaml.errors import DatasetBuildError

ROOTS = (".", "PMEmo2019", "PMEmo2019/PMEmo2019")
AVERAGED_FILE = "annotations/dynamic_annotations.csv"
RAW_CANDIDATES = ("annotations/dynamic_raw_annotations", "annotations/dynamic_raw_annotations.csv")
AUDIO_DIR = "chorus"
FEATURES_FILE = "features/dynamic_features.csv"
METADATA_FILE = "metadata.csv"

# The 27 chorus clips shorter than 15.5 s: PMEmo drops the first 15 s of annotation, so they have none.
UNANNOTATED_IDS = frozenset(
    "11 64 85 95 101 110 118 205 206 226 264 278 291 311 320 352 359 371 384 392 404 459 464 596 610 687 866".split()
)
RAW_RANGE = (0.0, 1.0)

CITATION = """@inproceedings{zhang2018pmemo,
  title     = {The PMEmo Dataset for Music Emotion Recognition},
  author    = {Zhang, Kejun and Zhang, Hui and Li, Simeng and Yang, Changyuan and Sun, Lingyun},
  booktitle = {Proceedings of the 2018 ACM International Conference on Multimedia Retrieval (ICMR)},
  pages     = {135--142},
  year      = {2018}
}"""

_ID = ("musicid", "songid", "id")
_TIME = ("frametime", "time")
_SUBJECT = ("subjectid", "subject", "annotator", "annotatorid", "participant", "participantid", "workerid", "userid")
_AROUSAL = ("arousalmean", "arousal", "arousalraw")
_VALENCE = ("valencemean", "valence", "valenceraw")


@dataclass
class PmemoLayout:
    root: Path
    averaged: Path
    raw: list[Path]  # per-subject long-format files (empty when absent)
    audio: Path | None
    features: Path | None
    metadata: Path | None


def find_layout(source: str | os.PathLike) -> PmemoLayout:
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        raise DatasetBuildError(f"PMEmo source {source} is not a folder")
    searched = []
    for candidate in ROOTS:
        root = (source / candidate).resolve()
        searched.append(str(root / AVERAGED_FILE))
        if not (root / AVERAGED_FILE).is_file():
            continue
        raw: list[Path] = []
        for name in RAW_CANDIDATES:
            path = root / name
            if path.is_dir():
                raw = sorted(path.glob("*.csv"))
            elif path.is_file():
                raw = [path]
            if raw:
                break
        optional = lambda rel: (root / rel) if (root / rel).exists() else None  # noqa: E731
        return PmemoLayout(root, root / AVERAGED_FILE, raw, optional(AUDIO_DIR), optional(FEATURES_FILE),
                           optional(METADATA_FILE))
    raise DatasetBuildError("PMEmo dynamic_annotations.csv not found; searched:\n  " + "\n  ".join(searched))


def _normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _column(frame, candidates: Sequence[str], path: Path, what: str) -> str:
    names = {_normalize(c): c for c in frame.columns}
    for candidate in candidates:
        if candidate in names:
            return names[candidate]
    raise DatasetBuildError(f"{path}: no {what} column (looked for {', '.join(candidates)}; found {list(frame.columns)})")


def _read_csv(path: Path):
    import pandas as pd

    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError) as exc:
        raise DatasetBuildError(f"{path}: cannot read ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _song_id(value) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else str(value)


def _curves(frame, key_cols: list[str], time_col: str, a_col: str, v_col: str, path: Path,
            report: DropReport, scope: str, value_range):
    """Group long-format rows into curves: yields (key tuple, start, arousal, valence) for usable groups."""
    import pandas as pd

    frame = frame.copy()
    for col in (time_col, a_col, v_col):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    bad_time = frame[time_col].isna()
    for key, group in frame.groupby(key_cols, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        try:
            ids = tuple(_song_id(k) if i == 0 else str(k).strip() for i, k in enumerate(key))
        except (TypeError, ValueError):
            report.problem(scope, "malformed row", f"{path}: song id {key[0]!r} is not a number")
            continue
        who = f"{path.name}, song {ids[0]}" + (f", annotator {ids[1]}" if len(ids) > 1 else "")
        if bad_time[group.index].any():
            report.problem(scope, "malformed row", f"{who}: non-numeric frameTime")
            continue
        group = group.sort_values(time_col, kind="stable")
        duplicated = group[time_col].duplicated(keep="first")
        if duplicated.any():
            # The same frame twice: a listener entered twice (long format), or a repeated row. Keep the first.
            reason = "duplicate rater" if len(ids) > 1 else "duplicate frame"
            report.problem(scope, reason, f"{who}: {int(duplicated.sum())} repeated frameTime rows, kept the first")
            group = group[~duplicated]
        times = group[time_col].to_numpy(np.float64)
        a, v = group[a_col].to_numpy(np.float64), group[v_col].to_numpy(np.float64)
        valid = ~(np.isnan(a) | np.isnan(v))
        if not valid.any():
            report.problem(scope, "empty curve", who)
            continue
        last = int(np.flatnonzero(valid)[-1]) + 1  # NaN rows after the last value are the end of the song
        times, a, v = times[:last], a[:last], v[:last]
        expected = times[0] + np.arange(times.size) / FRAME_RATE
        if not np.allclose(times, expected, atol=1e-3):
            gap = int(np.flatnonzero(~np.isclose(times, expected, atol=1e-3))[0])
            report.problem(scope, "frame times not consecutive at 2 Hz", f"{who}: frame {gap} at {times[gap]} s")
            continue
        record = Record(ids[0], ids[1] if len(ids) > 1 else AVERAGE_ANNOTATOR, a.astype(np.float32),
                        v.astype(np.float32), float(times[0]))
        problem = check_record(record, value_range)
        if problem:
            report.problem(scope, problem, who)
            continue
        yield record


def _ids(column) -> set[str]:
    out = set()
    for value in column.dropna().unique():
        try:
            out.add(_song_id(value))
        except (TypeError, ValueError):
            pass
    return out


def read_averaged(layout: PmemoLayout, report: DropReport, scope: str = "dmer") -> tuple[list[Record], set[str]]:
    """The averaged curves, and the ids of every song the file mentions (usable or not)."""
    frame = _read_csv(layout.averaged)
    cols = [_column(frame, c, layout.averaged, w) for c, w in
            ((_ID, "musicId"), (_TIME, "frameTime"), (_AROUSAL, "Arousal(mean)"), (_VALENCE, "Valence(mean)"))]
    records = list(_curves(frame, cols[:1], cols[1], cols[2], cols[3], layout.averaged, report, scope, RAW_RANGE))
    return records, _ids(frame[cols[0]])


def read_per_subject(layout: PmemoLayout, report: DropReport, scope: str = "pdmer") -> tuple[list[Record], set[str]]:
    """The per-subject curves of every long-format file, and the ids of every song they mention."""
    records: list[Record] = []
    seen: set[tuple[str, str]] = set()
    mentioned: set[str] = set()
    for path in layout.raw:
        frame = _read_csv(path)
        cols = [_column(frame, c, path, w) for c, w in
                ((_ID, "musicId"), (_SUBJECT, "subject id"), (_TIME, "frameTime"), (_AROUSAL, "Arousal"),
                 (_VALENCE, "Valence"))]
        mentioned |= _ids(frame[cols[0]])
        for record in _curves(frame, cols[:2], cols[2], cols[3], cols[4], path, report, scope, RAW_RANGE):
            key = (record.song_id, record.annotator)
            if key in seen:  # the same (song, subject) in two files
                report.problem(scope, "duplicate rater", f"{path.name}, song {key[0]}, annotator {key[1]}: kept the first")
                continue
            seen.add(key)
            records.append(record)
    return records, mentioned


def _feature_reader(path: Path):
    frame = _read_csv(path)
    id_col = _column(frame, _ID, path, "musicId")
    time_col = _column(frame, _TIME, path, "frameTime")
    import pandas as pd

    values = frame.drop(columns=[id_col, time_col]).apply(pd.to_numeric, errors="coerce")
    groups = {_song_id(k): idx for k, idx in frame.groupby(id_col).indices.items()}
    times = frame[time_col].to_numpy(np.float64)
    matrix = values.to_numpy(dtype=np.float32)

    def lookup(song_id: str):
        if song_id not in groups:
            raise LookupError(f"{path}: no rows for song {song_id}")
        rows = groups[song_id]
        if not np.isfinite(matrix[rows]).all():
            raise ValueError(f"{path}: missing or non-numeric feature values for song {song_id}")
        return times[rows], matrix[rows]

    return lookup


def _rescale(records: list[Record]) -> list[Record]:
    return [
        Record(r.song_id, r.annotator, r.arousal * 2 - 1, r.valence * 2 - 1, r.start_seconds, r.frame_rate,
               r.partition, r.annotator_info, r.features)
        for r in records
    ]


def _report_unannotated(layout: PmemoLayout, listed: set[str], annotated: set[str], strict_dmer: bool,
                        report: DropReport) -> None:
    """Clips listed in the release (audio files, metadata.csv) but never annotated: the 27 known short clips
    are filtered; any other is a problem when dmer is built."""
    if layout.metadata is not None:
        meta = _read_csv(layout.metadata)
        listed = listed | _ids(meta[_column(meta, _ID, layout.metadata, "musicId")])
    for song_id in sorted(listed - annotated, key=lambda s: (len(s), s)):
        if song_id in UNANNOTATED_IDS:
            report.filtered("songs", "clip without dynamic annotations (one of the 27 clips shorter than 15.5 s)",
                            f"song {song_id}")
        elif strict_dmer:
            report.problem("songs", "clip without dynamic annotations", f"song {song_id}: listed but not annotated")


def _partitions(dmer: list[Record], pdmer: list[Record], opts: ReleaseOptions, test_fraction: float,
                test_annotator_fraction: float) -> tuple[list[Record], list[Record]]:
    """PMEmo has no official split: dmer by seeded song fractions, pdmer by a seeded fraction of listeners."""
    songs = [r.song_id for r in dmer]
    test = held_out(songs, test_fraction, opts.seed, "pmemo-dmer-test")
    validation = held_out([s for s in songs if s not in test], opts.validation_fraction, opts.seed,
                          "pmemo-dmer-validation")
    dmer = [r.with_partition("test" if r.song_id in test else "validation" if r.song_id in validation else "train")
            for r in dmer]
    test_subjects = held_out([r.annotator for r in pdmer], test_annotator_fraction, opts.seed, "pmemo-pdmer-test")
    return dmer, [r.with_partition("test" if r.annotator in test_subjects else "train") for r in pdmer]


def _card(opts: ReleaseOptions, test_fraction: float, test_annotator_fraction: float, rescale_to_minus1_1: bool,
          value_range: tuple[float, float], pdmer: list[Record]) -> CardInfo:
    """The dataset card of a PMEmo build (licence, citation, partitions of these options)."""
    return CardInfo(
        pretty_name="PMEmo2019 dynamic emotion annotations (dsaml format)",
        summary=(
            "PMEmo2019: chorus clips of popular songs with valence and arousal annotated every 0.5 s from 15 s on, "
            "converted to the dsaml format for dynamic music emotion recognition"
            + (" and per-listener personalization." if pdmer else ".")
        ),
        source="Built with `dsaml prepare pmemo` from the PMEmo2019 release (https://github.com/HuiZhangDB/PMEmo).",
        license="other",
        license_name="pmemo-non-commercial-research",
        license_link="https://github.com/HuiZhangDB/PMEmo",
        license_text=(
            "PMEmo is provided for **non-commercial research**; the chorus clips are excerpts of copyrighted "
            "recordings. Keep derived folders private unless the PMEmo terms allow otherwise, and cite the paper."
        ),
        value_range=value_range,
        citation=CITATION,
        partitions=(
            f"- `dmer`: seeded song split (seed {opts.seed}): `test` = {test_fraction:g} of the songs, `validation` = "
            f"{opts.validation_fraction:g} of the rest, `train` = the remainder. PMEmo has no official split.\n"
            + (f"- `pdmer`: listeners split by a seeded {test_annotator_fraction:g} into `test` (unseen listeners "
               "for personalization evaluation) and `train`; official DEAM filters applied (flat curves < "
               f"{opts.flatness_threshold:g}, fewer than {opts.min_songs_per_annotator} songs).\n" if pdmer else "")
        ),
        extra_sections=[(
            "Value range",
            f"Values are in [{value_range[0]:g}, {value_range[1]:g}]"
            + (" (rescaled from PMEmo's [0, 1] with 2v - 1)." if rescale_to_minus1_1 else
               ", PMEmo's own scale (not rescaled; build with `rescale_to_minus1_1=True` for [-1, 1])."),
        )],
        tags=["pmemo"],
    )


def build_pmemo(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    test_fraction: float = 0.2,
    test_annotator_fraction: float = 0.2,
    rescale_to_minus1_1: bool = False,
    **options,
) -> Path:
    """Build the PMEmo dataset folder at `output` and return its path (PMEmo's options: see the module docstring;
    the others, shared by every release builder: `ReleaseOptions`)."""
    opts = ReleaseOptions.from_kwargs("build_pmemo", options)
    layout = find_layout(source)
    build = ReleaseBuild(
        output, opts, available={"dmer"} | ({"pdmer", "pdmer_flat"} if layout.raw else set()),
        audio_missing=None if layout.audio else f"PMEmo audio folder {layout.root / AUDIO_DIR} not found "
        "(require_audio=False for labels only)",
        features_missing=None if layout.features else f"PMEmo features file {layout.root / FEATURES_FILE} not found",
    )
    if not layout.raw:
        logger.info("no per-subject dynamic annotations under %s/annotations: building dmer only", layout.root)
    report, wanted = build.report, build.configs

    dmer, annotated = read_averaged(layout, report) if "dmer" in wanted else ([], set())
    pdmer, rated = read_per_subject(layout, report) if {"pdmer", "pdmer_flat"} & set(wanted) else ([], set())

    files = index_audio(layout.audio)
    _report_unannotated(layout, set(files), annotated | rated, "dmer" in wanted, report)

    needed = {r.song_id for r in dmer} | {r.song_id for r in pdmer}
    durations = probe_durations({s: files[s] for s in needed if s in files}, report, "audio", opts.progress)
    dmer = build.with_audio(dmer, files, durations, "dmer", layout.audio)
    pdmer = build.with_audio(pdmer, files, durations, "pdmer", layout.audio)
    if opts.include_features:
        dmer, pdmer = build.with_features(dmer, pdmer, _feature_reader(layout.features))

    dmer, pdmer = _partitions(dmer, pdmer, opts, test_fraction, test_annotator_fraction)
    pdmer = build.filter_listeners(pdmer)

    value_range = RAW_RANGE
    if rescale_to_minus1_1:
        dmer, pdmer, value_range = _rescale(dmer), _rescale(pdmer), (-1.0, 1.0)

    card = _card(opts, test_fraction, test_annotator_fraction, rescale_to_minus1_1, value_range, pdmer)
    summary = {
        "dataset": "pmemo",
        "source": str(layout.root),
        "options": {
            "configs": wanted, "test_fraction": test_fraction, "validation_fraction": opts.validation_fraction,
            "test_annotator_fraction": test_annotator_fraction, "seed": opts.seed,
            "flatness_threshold": opts.flatness_threshold, "min_songs_per_annotator": opts.min_songs_per_annotator,
            "rescale_to_minus1_1": rescale_to_minus1_1, "include_features": opts.include_features,
            "require_audio": opts.require_audio,
        },
        "per_subject_files": [str(p) for p in layout.raw],
    }
    return build.finish(dmer, pdmer, files, durations, card, summary)
