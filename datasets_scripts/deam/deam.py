"""DEAM (MediaEval "Emotion in Music" 2013-2015; Aljanaki, Yang & Soleymani, PLoS ONE 2017) -> dsaml folder.

The official release is read as distributed. `source` is the folder holding `DEAM_Annotations/` and
`MEMD_audio/`; each part is looked up at the candidates below, in order (unzipped archives nest differently):

    annotations root    DEAM_Annotations/annotations | annotations | . | DEAM/DEAM_Annotations/annotations
      averaged          <root>/annotations averaged per song/dynamic (per second annotations)/{arousal,valence}.csv
      per rater         <root>/annotations per each rater/dynamic (per second annotations)/{arousal,valence}/<id>.csv
    audio               MEMD_audio | DEAM_audio/MEMD_audio | audio | DEAM/MEMD_audio       (<song_id>.mp3)
    features            DEAM_features | features | DEAM_features/features | DEAM/DEAM_features (<song_id>.csv)

Protocol (the DSAML reference code's):
- `dmer`: averaged labels. test = song ids > 2000 (the 58 full-length 2015 songs); validation = a seeded
  `validation_fraction` of the other songs (the reference code selects models on test; we never do).
- `pdmer` / `pdmer_flat`: per-rater labels from files that have a `WorkerId` column (files without it are
  counted and skipped). Ids 1001-2000 are meta-train (`partition` "train"), ids > 2000 test; ids <= 1000 are
  left out as in the reference code (`official_song_ranges=False` keeps them, as train). Official filters:
  flat curves and annotators with fewer than `min_songs_per_annotator` songs (see `filters.py`).
- The reference code adds each song's averaged curve as one more annotator ("all"); that quirk is off by
  default (`include_average_annotator=True` adds it, named "average").
- Songs without audio are dropped and counted (`require_audio=False` keeps them with `audio` = "": useful for
  label statistics or feature-only models, not for audio models).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from dsaml.datasets_scripts.common.audio_files import index_audio, probe_durations
from dsaml.datasets_scripts.common.card import CardInfo
from dsaml.datasets_scripts.common.curves import WideTable, pair_curves, parse_curve, read_wide_csv
from dsaml.datasets_scripts.common.release import ReleaseBuild, ReleaseOptions
from dsaml.datasets_scripts.common.report import DropReport, logger
from dsaml.datasets_scripts.common.schema import AVERAGE_ANNOTATOR, Record, check_record
from dsaml.datasets_scripts.common.splits import held_out
from dsaml.errors import CurveError, DatasetBuildError

ANNOTATION_ROOTS = ("DEAM_Annotations/annotations", "annotations", ".", "DEAM/DEAM_Annotations/annotations")
AVERAGED_DIR = "annotations averaged per song/dynamic (per second annotations)"
PER_RATER_DIR = "annotations per each rater/dynamic (per second annotations)"
AUDIO_DIRS = ("MEMD_audio", "DEAM_audio/MEMD_audio", "audio", "DEAM/MEMD_audio")
FEATURE_DIRS = ("DEAM_features", "features", "DEAM_features/features", "DEAM/DEAM_features")

TEST_IDS_ABOVE = 2000  # ids > 2000: the 2015 full-length songs (official test set)
PERSONALIZED_IDS_ABOVE = 1000  # per-rater ids <= 1000 are not used by the official protocol
VALUE_RANGE = (-1.0, 1.0)

CITATION = """@article{aljanaki2017deam,
  title   = {Developing a benchmark for emotional analysis of music},
  author  = {Aljanaki, Anna and Yang, Yi-Hsuan and Soleymani, Mohammad},
  journal = {PLoS ONE},
  volume  = {12},
  number  = {3},
  pages   = {e0173392},
  year    = {2017}
}"""


@dataclass
class DeamLayout:
    source: Path
    averaged_arousal: Path
    averaged_valence: Path
    per_rater: Path | None  # folder holding arousal/ and valence/
    audio: Path | None
    features: Path | None


def _first_dir(source: Path, candidates: Sequence[str]) -> Path | None:
    for candidate in candidates:
        path = (source / candidate).resolve()
        if path.is_dir():
            return path
    return None


def find_layout(source: str | os.PathLike) -> DeamLayout:
    """Locate the release's parts under `source` (see the module docstring for the candidates searched)."""
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        raise DatasetBuildError(f"DEAM source {source} is not a folder")
    searched = []
    for root in ANNOTATION_ROOTS:
        averaged = source / root / AVERAGED_DIR
        searched.append(str(averaged))
        if (averaged / "arousal.csv").is_file() and (averaged / "valence.csv").is_file():
            rater = (source / root / PER_RATER_DIR).resolve()
            has_raters = (rater / "arousal").is_dir() and (rater / "valence").is_dir()
            return DeamLayout(
                source,
                (averaged / "arousal.csv").resolve(),
                (averaged / "valence.csv").resolve(),
                rater if has_raters else None,
                _first_dir(source, AUDIO_DIRS),
                _first_dir(source, FEATURE_DIRS),
            )
    raise DatasetBuildError(
        "DEAM averaged dynamic annotations (arousal.csv and valence.csv) not found; searched:\n  "
        + "\n  ".join(searched)
    )


# -- averaged annotations (dmer) ----------------------------------------------------------------------------
def _rows_by_id(table: WideTable, report: DropReport, scope: str, what: str):
    """id -> (where, curve) for the usable rows of a wide file, plus the ids whose row could not be used and
    the ids that appear more than once (the first row is kept; callers report each duplicate once)."""
    rows: dict[str, tuple[str, np.ndarray]] = {}
    failed: set[str] = set()
    duplicates: dict[str, str] = {}
    for line, key, cells in table.rows:
        where = f"{table.path.name}, line {line}, {what} {key or '?'}"
        if not key:
            report.problem(scope, "malformed row", f"{where}: no {what} id")
            continue
        if key in rows or key in failed:
            duplicates.setdefault(key, where)
            continue
        try:
            rows[key] = (where, parse_curve(cells, table.num_columns, where))
        except CurveError as exc:
            failed.add(key)
            report.problem(scope, exc.reason, exc.detail)
    return rows, failed, duplicates


def _check_same_frames(a: WideTable, v: WideTable) -> None:
    if not (np.isclose(a.start_seconds, v.start_seconds) and np.isclose(a.frame_rate, v.frame_rate)):
        raise DatasetBuildError(
            f"{a.path} starts at {a.start_seconds} s / {a.frame_rate} Hz but {v.path} at "
            f"{v.start_seconds} s / {v.frame_rate} Hz"
        )


def _song_number(song_id: str) -> int:
    return int(float(song_id))


def _checked_number(song_id: str, report: DropReport, scope: str, reason: str, where: str) -> int | None:
    """The song's number, or None after reporting `where` (a file or a row) for an id that is not a number."""
    try:
        return _song_number(song_id)
    except ValueError:
        report.problem(scope, reason, f"{where}: song id {song_id!r} is not a number")
        return None


def _pair(
    song_id: str, annotator: str, arousal, valence, table: WideTable, partition: str, report: DropReport, scope: str,
    info: dict | None = None,
) -> Record | None:
    (where, a), (where_v, v) = arousal, valence
    try:
        a, v, trimmed = pair_curves(a, v, where)
    except CurveError as exc:
        report.problem(scope, exc.reason, exc.detail)
        return None
    if trimmed:
        report.note("arousal/valence differ by <= 2 frames at the end: trimmed to the shorter", where)
    record = Record(song_id, annotator, a, v, table.start_seconds, table.frame_rate, partition, info or {})
    problem = check_record(record, VALUE_RANGE)
    if problem:
        # name the file whose curve has the problem (the valence file for a bad valence value)
        culprits = [w for w, curve in ((where, a), (where_v, v))
                    if check_record(replace(record, arousal=curve, valence=curve), VALUE_RANGE) == problem]
        report.problem(scope, problem, "; ".join(culprits) or where)
        return None
    return record


def read_averaged(layout: DeamLayout, report: DropReport, scope: str = "dmer") -> list[Record]:
    """One record per song of the averaged annotations (partition train or test by song id)."""
    tables = read_wide_csv(layout.averaged_arousal), read_wide_csv(layout.averaged_valence)
    _check_same_frames(*tables)
    (arousal, a_failed, a_dup), (valence, v_failed, v_dup) = (_rows_by_id(t, report, scope, "song") for t in tables)
    for song_id, where in sorted({**v_dup, **a_dup}.items()):
        report.problem(scope, "duplicate song", f"{where}: song {song_id} appears twice, keeping the first row")
    records = []
    for song_id in sorted(set(arousal) | set(valence), key=lambda s: (len(s), s)):
        if song_id in a_failed or song_id in v_failed:
            continue  # already reported
        if song_id not in valence or song_id not in arousal:
            missing = "valence.csv" if song_id not in valence else "arousal.csv"
            report.problem(scope, "song missing from one of arousal.csv/valence.csv", f"song {song_id}: not in {missing}")
            continue
        number = _checked_number(song_id, report, scope, "malformed row", arousal[song_id][0])
        if number is None:
            continue
        partition = "test" if number > TEST_IDS_ABOVE else "train"
        record = _pair(song_id, AVERAGE_ANNOTATOR, arousal[song_id], valence[song_id], tables[0], partition, report, scope)
        if record:
            records.append(record)
    return records


# -- per-rater annotations (pdmer) --------------------------------------------------------------------------
def _rater_partition(number: int, official: bool) -> str | None:
    if number > TEST_IDS_ABOVE:
        return "test"
    if official and number <= PERSONALIZED_IDS_ABOVE:
        return None
    return "train"


def read_per_rater(
    layout: DeamLayout, report: DropReport, official_song_ranges: bool = True, progress: bool = False,
    scope: str = "pdmer",
) -> list[Record]:
    """One record per (song, rater) from the per-rater files that identify their raters (`WorkerId`)."""
    from tqdm.auto import tqdm

    a_dir, v_dir = layout.per_rater / "arousal", layout.per_rater / "valence"
    a_files = {p.stem: p for p in a_dir.glob("*.csv")}
    v_files = {p.stem: p for p in v_dir.glob("*.csv")}
    records: list[Record] = []
    for song_id in tqdm(sorted(set(a_files) | set(v_files), key=lambda s: (len(s), s)), desc="per-rater files",
                        unit="song", disable=not progress):
        if song_id not in a_files or song_id not in v_files:
            have = a_files.get(song_id) or v_files.get(song_id)
            report.problem(scope, "per-rater file missing for one dimension", f"{have}: no file for the other dimension")
            continue
        number = _checked_number(song_id, report, scope, "malformed file name", str(a_files[song_id]))
        if number is None:
            continue
        partition = _rater_partition(number, official_song_ranges)
        if partition is None:
            report.filtered(scope, "song id <= 1000 (not personalized in the official protocol)", f"song {song_id}")
            continue
        tables = read_wide_csv(a_files[song_id]), read_wide_csv(v_files[song_id])
        if any(t.id_column is None or t.id_column.lower() != "workerid" for t in tables):
            report.filtered(scope, "per-rater file without WorkerId column", f"song {song_id}")
            continue
        _check_same_frames(*tables)
        (arousal, a_failed, a_dup), (valence, v_failed, v_dup) = (_rows_by_id(t, report, scope, "rater") for t in tables)
        for rater, where in sorted({**v_dup, **a_dup}.items()):
            report.problem(scope, "duplicate rater", f"{where}: song {song_id}, annotator {rater} appears twice, "
                                                     "keeping the first row")
        for rater in sorted(set(arousal) | set(valence)):
            if rater in a_failed or rater in v_failed:
                continue  # already reported
            if rater not in valence or rater not in arousal:
                report.problem(scope, "rater missing from the other dimension's file",
                               f"song {song_id}, annotator {rater}")
                continue
            record = _pair(song_id, rater, arousal[rater], valence[rater], tables[0], partition, report, scope)
            if record:
                records.append(record)
    return records


# -- features -----------------------------------------------------------------------------------------------
def _feature_reader(directory: Path):
    import pandas as pd

    def lookup(song_id: str):
        path = directory / f"{song_id}.csv"
        if not path.is_file():
            raise LookupError(f"{path} not found")
        frame = pd.read_csv(path, sep=";", skipinitialspace=True)
        frame.columns = [str(c).strip() for c in frame.columns]
        if "frameTime" not in frame.columns:
            raise ValueError(f"{path}: no frameTime column")
        times = frame.pop("frameTime").to_numpy(dtype=np.float64)
        matrix = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float32)
        if not np.isfinite(matrix).all():
            raise ValueError(f"{path}: non-numeric or missing feature values")
        return times, matrix

    return lookup


# -- build ----------------------------------------------------------------------------------------------------
def _average_annotator(dmer: list[Record], official_song_ranges: bool) -> list[Record]:
    """Each song's averaged curve as one more pdmer annotator (the reference code's "all" pseudo-annotator)."""
    info = {"pseudo_annotator": True, "description": "the song's averaged annotation"}
    records = []
    for r in dmer:
        partition = _rater_partition(_song_number(r.song_id), official_song_ranges)
        if partition:
            records.append(Record(r.song_id, r.annotator, r.arousal, r.valence, r.start_seconds, r.frame_rate,
                                  partition, info))
    return records


def _card(opts: ReleaseOptions, official_song_ranges: bool, include_average_annotator: bool) -> CardInfo:
    """The dataset card of a DEAM build (licence, citation, partitions of these options)."""
    return CardInfo(
        pretty_name="DEAM dynamic emotion annotations (dsaml PDMER format)",
        summary=(
            "The MediaEval Database for Emotional Analysis in Music (DEAM): 1,802 songs and excerpts with valence and "
            "arousal annotated every 0.5 s, converted to the dsaml format: averaged annotations (`dmer`) and one split "
            "per annotator (`pdmer`) for personalized dynamic music emotion recognition (DSAML, arXiv 2412.19200)."
        ),
        source=(
            "Built with `dsaml prepare deam` from the official DEAM release (https://cvml.unige.ch/databases/DEAM/): "
            "`DEAM_Annotations` (averaged and per-rater dynamic annotations) and `MEMD_audio`."
        ),
        license="other",
        license_name="deam-non-commercial-research",
        license_link="https://cvml.unige.ch/databases/DEAM/",
        license_text=(
            "DEAM is distributed for **non-commercial research** only. The audio comes from the Free Music Archive, "
            "Jamendo and Medley DB under per-track Creative Commons licences; check each track's licence before any "
            "other use. Do not publish this folder publicly unless the DEAM terms allow it; prefer a private repo."
        ),
        value_range=VALUE_RANGE,
        citation=CITATION,
        partitions=(
            f"- `dmer`: `test` = song ids > {TEST_IDS_ABOVE} (the full-length 2015 songs, labels up to their end); "
            f"`validation` = a seeded {opts.validation_fraction:g} of the other songs (seed {opts.seed}); `train` = the rest. "
            "Select models on `validation`, never on `test`.\n"
            f"- `pdmer`: `partition` = `train` for song ids {PERSONALIZED_IDS_ABOVE + 1}-{TEST_IDS_ABOVE} (meta-training), "
            f"`test` for ids > {TEST_IDS_ABOVE} (personalization evaluation)"
            + (f"; ids <= {PERSONALIZED_IDS_ABOVE} left out (official protocol)" if official_song_ranges else "")
            + f". Filters: flat curves (mean absolute deviation < {opts.flatness_threshold:g} over the first 60 values, "
            f"arousal or valence) and annotators with fewer than {opts.min_songs_per_annotator} songs in a partition.\n"
            + ("- The averaged curve of every song is included as annotator `average` (reference-code quirk).\n"
               if include_average_annotator else "")
        ),
        extra_sections=[] if opts.require_audio else [(
            "Songs without audio",
            "This build kept songs whose audio was not in the source (`require_audio=False`): their `audio` is an "
            "empty string. Use them for label statistics or feature-based models only.",
        )],
        tags=["deam"],
    )


def build_deam(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    official_song_ranges: bool = True,
    include_average_annotator: bool = False,
    **options,
) -> Path:
    """Build the DEAM dataset folder at `output` and return its path (DEAM's options: see the module docstring;
    the others, shared by every release builder: `ReleaseOptions`)."""
    opts = ReleaseOptions.from_kwargs("build_deam", options)
    layout = find_layout(source)
    build = ReleaseBuild(
        output, opts, available={"dmer"} | ({"pdmer", "pdmer_flat"} if layout.per_rater else set()),
        audio_missing=None if layout.audio else "DEAM audio folder not found (pass require_audio=False for labels "
        "only); searched:\n  " + "\n  ".join(str(layout.source / c) for c in AUDIO_DIRS),
        features_missing=None if layout.features else "DEAM features folder not found; searched:\n  "
        + "\n  ".join(str(layout.source / c) for c in FEATURE_DIRS),
    )
    if layout.per_rater is None:
        logger.warning("no per-rater annotations under %s: building dmer only", layout.source)
    report, wanted = build.report, build.configs

    dmer = read_averaged(layout, report) if "dmer" in wanted or include_average_annotator else []
    pdmer: list[Record] = []
    if {"pdmer", "pdmer_flat"} & set(wanted):
        pdmer = read_per_rater(layout, report, official_song_ranges, opts.progress)
        if include_average_annotator:
            pdmer += _average_annotator(dmer, official_song_ranges)
    if "dmer" not in wanted:
        dmer = []

    # Audio: every song with rows needs a readable file that covers its annotation.
    files = index_audio(layout.audio)
    songs = {r.song_id for r in dmer} | {r.song_id for r in pdmer}
    durations = probe_durations({s: files[s] for s in songs if s in files}, report, "audio", opts.progress)
    dmer = build.with_audio(dmer, files, durations, "dmer", layout.audio)
    pdmer = build.with_audio(pdmer, files, durations, "pdmer", layout.audio)
    if opts.include_features:
        dmer, pdmer = build.with_features(dmer, pdmer, _feature_reader(layout.features))
    pdmer = build.filter_listeners(pdmer)

    validation = held_out([r.song_id for r in dmer if r.partition == "train"], opts.validation_fraction, opts.seed,
                          "deam-dmer-validation")
    dmer = [r.with_partition("validation") if r.song_id in validation else r for r in dmer]

    card = _card(opts, official_song_ranges, include_average_annotator)
    summary = {
        "dataset": "deam",
        "source": str(layout.source),
        "options": {
            "configs": wanted, "validation_fraction": opts.validation_fraction, "seed": opts.seed,
            "flatness_threshold": opts.flatness_threshold, "min_songs_per_annotator": opts.min_songs_per_annotator,
            "official_song_ranges": official_song_ranges, "include_average_annotator": include_average_annotator,
            "include_features": opts.include_features, "require_audio": opts.require_audio,
        },
    }
    return build.finish(dmer, pdmer, files, durations, card, summary)
