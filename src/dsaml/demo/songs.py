"""The demo page's own songs: a few synthetic songs rendered by the package's generator, since no audio ships.

Each song is a `SongPlan` of the synthetic PDMER generator (`datasets_scripts/synthetic_music.py`) designed by
hand so that the four songs sound different where the model listens (tempo, loudness, brightness, mode): a
listener has something to disagree with the base model about, and a second song to compare on after
personalizing on the first. Rendering is deterministic (the noise of the clicks is seeded by the song's index) and
takes well under a second; a song is rendered once, when it is first picked, into the page's working folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsaml.datasets_scripts.synthetic.music import SAMPLE_RATE, SongPlan, render
from dsaml.utils.files import atomic_path

__all__ = ["DEMO_SONGS", "DemoSong", "render_demo_song"]

SECONDS = 30.0  # DEAM-like clip length: long enough to annotate a change, short enough to annotate at once


@dataclass(frozen=True)
class DemoSong:
    key: str  # file stem and page value
    title: str  # what the page shows
    plan: SongPlan


def _plan(key: str, starts, tempo, loudness, brightness, major, tonic: int, progression) -> SongPlan:
    return SongPlan(song_id=key, seconds=SECONDS, section_starts=tuple(starts), tempo_bpm=tuple(tempo),
                    loudness_db=tuple(loudness), brightness=tuple(brightness), major=tuple(major),
                    transition_seconds=3.0, tonic_midi=tonic, progression=tuple(progression), drift_phase=0.0)


DEMO_SONGS: tuple[DemoSong, ...] = (
    DemoSong("calm_minor", "Calm, dark and minor", _plan(
        "calm_minor", (0.0, 15.0), (72.0, 68.0), (-27.0, -29.0), (0.15, 0.1), (0.0, 0.0), 45, (0, 5, 7, 0))),
    DemoSong("bright_major", "Fast, loud and bright, in major", _plan(
        "bright_major", (0.0, 15.0), (160.0, 168.0), (-14.0, -13.0), (0.85, 0.9), (1.0, 1.0), 52, (0, 7, 9, 5))),
    DemoSong("slow_build", "A slow build: from quiet minor to loud major", _plan(
        "slow_build", (0.0, 8.0, 16.0, 23.0), (70.0, 95.0, 130.0, 165.0), (-29.0, -24.0, -18.0, -13.0),
        (0.1, 0.35, 0.6, 0.9), (0.0, 0.0, 1.0, 1.0), 48, (0, 9, 5, 7))),
    DemoSong("mood_swings", "Mood swings: a section change every 7 seconds", _plan(
        "mood_swings", (0.0, 7.0, 14.0, 21.0), (150.0, 75.0, 155.0, 80.0), (-14.0, -27.0, -15.0, -26.0),
        (0.8, 0.2, 0.3, 0.85), (1.0, 0.0, 0.0, 1.0), 50, (0, 5, 0, 7))),
)


def render_demo_song(key: str, folder: str | os.PathLike) -> Path:
    """The WAV file of demo song `key` in `folder`, rendered there the first time it is asked for."""
    import soundfile as sf

    index = next((i for i, song in enumerate(DEMO_SONGS) if song.key == key), None)
    if index is None:
        raise ValueError(f"unknown demo song {key!r}; the demo songs are {', '.join(s.key for s in DEMO_SONGS)}")
    path = Path(folder) / f"{key}.wav"
    if not path.is_file():
        wave = render(DEMO_SONGS[index].plan, np.random.default_rng(index), SAMPLE_RATE)
        with atomic_path(path) as tmp:  # two page sessions may pick the same song at once
            sf.write(tmp, wave, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return path
