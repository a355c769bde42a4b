"""What building a folder from an official release (DEAM, PMEmo) involves beyond parsing: the options, and the
shared steps after the annotations are read (audio coverage, features, listener filters, writing).

A release builder parses its own layout into `Record`s, then hands them to a `ReleaseBuild`, the way datasets'
packaged builders keep configuration and writing apart from reading the source.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dsaml.datasets_scripts.common.audio_files import drop_uncovered
from dsaml.datasets_scripts.common.card import CardInfo
from dsaml.datasets_scripts.common.configs import check_configs, write_configs
from dsaml.datasets_scripts.common.features import attach_features
from dsaml.datasets_scripts.common.filters import (
    OFFICIAL_FLATNESS_THRESHOLD,
    OFFICIAL_MIN_SONGS_PER_ANNOTATOR,
    drop_flat_curves,
    drop_small_annotators,
)
from dsaml.datasets_scripts.common.report import DropReport
from dsaml.datasets_scripts.common.schema import Record
from dsaml.datasets_scripts.common.writer import DatasetFolderWriter
from dsaml.errors import DatasetBuildError


@dataclass(frozen=True)
class ReleaseOptions:
    """The options every release builder takes (`dsaml prepare deam|pmemo --help` describes each)."""

    configs: Sequence[str] | None = None  # None: every config the source supports
    validation_fraction: float = 0.05
    seed: int = 0
    flatness_threshold: float = OFFICIAL_FLATNESS_THRESHOLD
    min_songs_per_annotator: int = OFFICIAL_MIN_SONGS_PER_ANNOTATOR
    include_features: bool = False
    require_audio: bool = True
    audio_mode: str = "copy"
    overwrite: bool = False
    strict: bool = False
    progress: bool = False

    @classmethod
    def from_kwargs(cls, builder: str, kwargs: dict) -> ReleaseOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"{builder}() got unexpected keyword argument(s) {unknown}")
        return cls(**kwargs)


class ReleaseBuild:
    """One build: the drop report and the folder writer, and the steps between parsed records and the folder."""

    def __init__(self, output, options: ReleaseOptions, *, available: set[str], audio_missing: str | None,
                 features_missing: str | None) -> None:
        """Check the source before anything is written: `configs` are those requested (default: `available`);
        `audio_missing` / `features_missing` describe a part the source lacks (None: present)."""
        self.options = options
        self.configs = check_configs(options.configs, available)
        if options.require_audio and audio_missing:
            raise DatasetBuildError(audio_missing)
        if options.include_features and features_missing:
            raise DatasetBuildError(features_missing)
        self.report = DropReport(strict=options.strict)
        self.writer = DatasetFolderWriter(output, audio_mode=options.audio_mode, overwrite=options.overwrite,
                                          progress=options.progress)

    def with_audio(self, records: list[Record], files: dict[str, Path], durations: dict[str, float], scope: str,
                   audio_dir: Path | None) -> list[Record]:
        """The records whose audio is readable and covers their annotation, plus (without `require_audio`) those
        of songs with no audio file. Unreadable audio was reported once when its duration was probed."""
        kept, labels_only = [], []
        for record in records:
            if record.song_id in durations:
                kept.append(record)
            elif record.song_id not in files and not self.options.require_audio:
                labels_only.append(record)
            elif record.song_id not in files:
                self.report.problem(scope, "audio missing", f"song {record.song_id}, annotator {record.annotator}: "
                                                            f"no audio file in {audio_dir}")
        return drop_uncovered(kept, durations, self.report, scope) + labels_only

    def with_features(self, dmer: list[Record], pdmer: list[Record],
                      lookup: Callable) -> tuple[list[Record], list[Record]]:
        """Attach the release's frame features (`include_features`); `lookup(song_id) -> (times, matrix)`."""
        return attach_features(dmer, lookup, self.report, "dmer"), attach_features(pdmer, lookup, self.report, "pdmer")

    def filter_listeners(self, pdmer: list[Record]) -> list[Record]:
        """The official DEAM filters: flat curves, then annotators with too few songs in a partition."""
        pdmer = drop_flat_curves(pdmer, self.report, "pdmer", threshold=self.options.flatness_threshold)
        return drop_small_annotators(pdmer, self.report, "pdmer", min_songs=self.options.min_songs_per_annotator)

    def finish(self, dmer: list[Record], pdmer: list[Record], files: dict[str, Path],
               durations: dict[str, float], card: CardInfo, summary: dict) -> Path:
        """Write the audio the rows use, the configs, the card and build_report.json (`summary` + counts)."""
        used = {r.song_id for r in dmer} | {r.song_id for r in pdmer}
        self.writer.add_audio_files({s: files[s] for s in used if s in durations})
        self.writer.audio_paths.update({s: "" for s in used if s not in durations})
        write_configs(self.writer, self.configs, dmer, pdmer, with_features=self.options.include_features)
        summary = {**summary, "songs": len(used), "annotators": len({r.annotator for r in pdmer}),
                   "songs_without_audio": sum(1 for s in used if s not in durations)}
        return self.writer.finish(card, self.report, summary)
