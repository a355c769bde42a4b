"""Finding each song's audio in a release and checking it covers its annotation (header reads only: cheap)."""

from __future__ import annotations

from pathlib import Path

from dsaml.audio.reader import AUDIO_EXTENSIONS, audio_duration
from dsaml.datasets_scripts.common.report import DropReport
from dsaml.datasets_scripts.common.schema import Record
from dsaml.errors import AudioError

DURATION_TOLERANCE = 0.5  # seconds: MP3 header lengths are estimates and annotation tails round up


def index_audio(directory: Path | None) -> dict[str, Path]:
    """song id (file stem) -> audio file, for the files directly in `directory`."""
    if directory is None or not directory.is_dir():
        return {}
    rank = {ext: i for i, ext in enumerate(AUDIO_EXTENSIONS)}
    found: dict[str, Path] = {}
    for entry in sorted(directory.iterdir()):
        ext = entry.suffix.lower()
        if ext in rank and entry.is_file():
            current = found.get(entry.stem)
            if current is None or rank[ext] < rank[current.suffix.lower()]:
                found[entry.stem] = entry
    return found


def probe_durations(
    files: dict[str, Path], report: DropReport, scope: str, progress: bool = False
) -> dict[str, float]:
    """Duration of every readable file; unreadable ones are reported and left out."""
    from tqdm.auto import tqdm

    durations = {}
    for song_id, path in tqdm(sorted(files.items()), desc="checking audio", unit="file", disable=not progress):
        try:
            durations[song_id] = audio_duration(path)
        except AudioError as exc:
            report.problem(scope, "unreadable audio", f"song {song_id}: {exc}")
    return durations


def drop_uncovered(
    records: list[Record],
    durations: dict[str, float],
    report: DropReport,
    scope: str,
    tolerance: float = DURATION_TOLERANCE,
) -> list[Record]:
    """Records whose annotation ends within `tolerance` of the end of their audio (others are reported)."""
    kept = []
    for record in records:
        duration = durations[record.song_id]
        if record.end_seconds > duration + tolerance:
            who = f"song {record.song_id}" + (f", annotator {record.annotator}" if record.annotator else "")
            report.problem(
                scope,
                "audio shorter than annotation",
                f"{who}: annotation ends at {record.end_seconds:.1f} s, audio lasts {duration:.1f} s",
            )
        else:
            kept.append(record)
    return kept
