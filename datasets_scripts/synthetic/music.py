"""Rendering synthetic songs: real audio whose musical properties follow known, smoothly varying controls.

A song is a sequence of sections. Each section sets four controls, crossfaded over a few seconds at section
boundaries and drifting slowly inside a section:

- tempo (BPM): a noise-burst click on every beat and a kick drum on every bar's first beat;
- loudness (dB RMS): the overall level of the mix;
- brightness (0-1): the harmonic content of the chord voices (sine-like -> sawtooth-like) and of the clicks;
- mode (major-ness, 0-1): the chords' third, a major third crossfaded with a minor third.

`synthetic.py` maps the same controls to arousal and valence, so the audio carries exactly the information
that determines the labels. Everything is vectorised numpy at 44.1 kHz; no external synthesiser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 44100
CONTROL_RATE = 100  # Hz: controls are computed on this grid and interpolated to audio rate
TABLE_SIZE = 4096
PROGRESSIONS = ((0, 5, 7, 0), (0, 7, 9, 5), (0, 9, 5, 7), (0, 5, 0, 7), (0, 3, 5, 7))  # chord roots, semitones
TEMPO_RANGE = (66.0, 174.0)
LOUDNESS_RANGE = (-30.0, -12.0)  # dBFS RMS of the mix
MIN_SECTION_SECONDS = 5.0


@dataclass(frozen=True)
class SongPlan:
    """Everything that defines one synthetic song (a pure function of the seed and the song's index)."""

    song_id: str
    seconds: float
    section_starts: tuple[float, ...]  # first is 0.0
    tempo_bpm: tuple[float, ...]
    loudness_db: tuple[float, ...]
    brightness: tuple[float, ...]
    major: tuple[float, ...]  # 1.0 major, 0.0 minor
    transition_seconds: float
    tonic_midi: int
    progression: tuple[int, ...]
    drift_phase: float

    def to_dict(self) -> dict:
        return {
            "seconds": self.seconds,
            "section_starts": list(self.section_starts),
            "tempo_bpm": list(self.tempo_bpm),
            "loudness_db": list(self.loudness_db),
            "brightness": list(self.brightness),
            "major": list(self.major),
            "tonic_midi": self.tonic_midi,
        }


def plan_song(song_id: str, seconds: float, rng: np.random.Generator) -> SongPlan:
    """3-5 sections of 5 s or more, each control drawn independently so the four vary in every combination."""
    sections = int(max(1, min(rng.integers(3, 6), seconds // MIN_SECTION_SECONDS)))
    lengths = MIN_SECTION_SECONDS + (seconds - sections * MIN_SECTION_SECONDS) * rng.dirichlet(np.ones(sections))
    starts = (0.0, *[float(b) for b in np.cumsum(lengths)[:-1]])
    n = len(starts)
    return SongPlan(
        song_id=song_id,
        seconds=float(seconds),
        section_starts=starts,
        tempo_bpm=tuple(float(x) for x in rng.uniform(*TEMPO_RANGE, size=n)),
        loudness_db=tuple(float(x) for x in rng.uniform(*LOUDNESS_RANGE, size=n)),
        brightness=tuple(float(x) for x in rng.uniform(0.0, 1.0, size=n)),
        major=tuple(float(x) for x in (rng.uniform(size=n) < 0.5)),
        transition_seconds=float(rng.uniform(1.5, 4.0)),
        tonic_midi=int(rng.integers(45, 57)),
        progression=PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))],
        drift_phase=float(rng.uniform(0, 2 * np.pi)),
    )


def _sections(values: tuple[float, ...], starts: tuple[float, ...], width: float, t: np.ndarray) -> np.ndarray:
    """Piecewise-constant section values joined by smoothstep ramps of `width` seconds centred on boundaries."""
    out = np.full(t.shape, values[0], dtype=np.float64)
    for start, before, after in zip(starts[1:], values[:-1], values[1:]):
        x = np.clip((t - start) / width + 0.5, 0.0, 1.0)
        out += (after - before) * x * x * (3 - 2 * x)
    return out


def controls(plan: SongPlan, t: np.ndarray) -> dict[str, np.ndarray]:
    """The four controls at times `t` (seconds): tempo_bpm, loudness_db, brightness, major."""
    s, w = plan.section_starts, plan.transition_seconds
    drift = np.sin(2 * np.pi * t / 9.0 + plan.drift_phase)
    return {
        "tempo_bpm": np.clip(_sections(plan.tempo_bpm, s, w, t) * (1 + 0.03 * drift), *TEMPO_RANGE),
        "loudness_db": np.clip(_sections(plan.loudness_db, s, w, t) + 1.5 * drift, *LOUDNESS_RANGE),
        "brightness": np.clip(_sections(plan.brightness, s, w, t) + 0.05 * drift, 0.0, 1.0),
        "major": np.clip(_sections(plan.major, s, w, t), 0.0, 1.0),
    }


def _tables() -> tuple[np.ndarray, np.ndarray]:
    phase = np.arange(TABLE_SIZE) / TABLE_SIZE * 2 * np.pi
    dark = np.sin(phase) + 0.15 * np.sin(2 * phase)
    bright = sum(np.sin(h * phase) / h for h in range(1, 16))
    return (dark / np.abs(dark).max()).astype(np.float32), (bright / np.abs(bright).max()).astype(np.float32)


_DARK, _BRIGHT = _tables()


def _oscillator(freq: np.ndarray, brightness: np.ndarray, sr: int) -> np.ndarray:
    phase = np.cumsum(freq / sr, dtype=np.float64)
    index = ((phase - np.floor(phase)) * TABLE_SIZE).astype(np.int32) % TABLE_SIZE
    dark, bright = _DARK[index], _BRIGHT[index]
    return dark + brightness * (bright - dark)


def _one_pole_lowpass(x: np.ndarray, coefficient: float) -> np.ndarray:
    from scipy.signal import lfilter

    return lfilter([1 - coefficient], [1, -coefficient], x).astype(np.float32)


def render(plan: SongPlan, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The song's mono waveform, float32 in (-1, 1)."""
    n = int(round(plan.seconds * sample_rate))
    t_ctrl = np.arange(int(np.ceil(plan.seconds * CONTROL_RATE)) + 2) / CONTROL_RATE
    ctrl = controls(plan, t_ctrl)
    t = np.arange(n, dtype=np.float64) / sample_rate
    up = {k: np.interp(t, t_ctrl, v).astype(np.float32) for k, v in ctrl.items()}

    beats = np.cumsum(up["tempo_bpm"].astype(np.float64) / 60.0 / sample_rate)  # beat phase
    beat_index = np.floor(beats).astype(np.int64)
    since_beat = (beats - beat_index) * 60.0 / up["tempo_bpm"]  # seconds since the last beat
    bar_index = beat_index // 4
    since_bar = since_beat + (beat_index % 4) * 60.0 / up["tempo_bpm"]

    # Percussion: a noise burst per beat (brighter noise when brighter), a kick on each bar's first beat.
    noise = rng.standard_normal(n).astype(np.float32)
    dark_noise = _one_pole_lowpass(noise, 0.97) * 4.0
    clicks = np.exp(-since_beat / 0.04).astype(np.float32) * (dark_noise + up["brightness"] * (noise - dark_noise))
    downbeat = (beat_index % 4) == 0
    kick_env = np.where(downbeat, np.exp(-since_beat / 0.12), 0.0)
    kick = (kick_env * np.sin(2 * np.pi * (50.0 * since_beat + 40.0 * 0.03 * (1 - np.exp(-since_beat / 0.03))))).astype(np.float32)

    # Chords: one per bar from the progression; the third crossfades between minor and major with `major`.
    chord = (bar_index % len(plan.progression)).astype(np.int32)
    roots = plan.tonic_midi + np.asarray(plan.progression, dtype=np.float64)

    def voice(interval: float) -> np.ndarray:
        hz = 440.0 * 2.0 ** ((roots + interval - 69) / 12.0)  # one frequency per chord, indexed per sample
        return _oscillator(hz[chord], up["brightness"], sample_rate)

    chord_env = (np.minimum(1.0, since_bar / 0.015) * (0.6 + 0.4 * np.exp(-since_bar / 0.6))).astype(np.float32)
    harmonic = (
        0.8 * voice(-12) + voice(0) + up["major"] * voice(4) + (1 - up["major"]) * voice(3) + 0.8 * voice(7)
    ) * chord_env

    mix = 0.35 * harmonic / 4.4 + 0.5 * clicks + 0.6 * kick
    mix /= np.sqrt(np.mean(mix.astype(np.float64) ** 2)) + 1e-12  # unit RMS, then the loudness curve
    out = mix * (10.0 ** (up["loudness_db"] / 20.0))
    return np.tanh(out * 1.2).astype(np.float32) / 1.2 * 0.99  # soft limiter: never clips the 16-bit FLAC
