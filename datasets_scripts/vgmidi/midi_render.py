"""Rendering MIDI files to audio without a system synthesizer, cached by content so rebuilding never re-renders.

Renderers:
- `sine` (default): `pretty_midi.PrettyMIDI.synthesize`, one sine tone per note (drums silent). Needs only
  numpy + mido. A proxy for the piano the listeners heard: pitch, rhythm, density and loudness are there, the
  timbre is not.
- `fluidsynth`: `PrettyMIDI.fluidsynth` with a SoundFont (default: the General MIDI font bundled with
  pretty_midi), where `pyfluidsynth` and the FluidSynth library are installed.

A rendered file is cached as FLAC under `<cache>/vgmidi-audio/`, named by the MIDI file's SHA-256, the
renderer (and SoundFont digest) and the sample rate, so an edited MIDI file is rendered again and an
unchanged one never is.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsaml.datasets_scripts.vgmidi.midi_files import load_midi
from dsaml.errors import MidiError
from dsaml.utils.files import atomic_path

RENDERERS = ("sine", "fluidsynth")
DEFAULT_SAMPLE_RATE = 22050  # Hz: enough for sine tones of piano pitches; the feature extractor resamples
RENDER_VERSION = "2"  # bump when the rendering of a given MIDI file changes: it is part of the cache key
PEAK = 0.8  # peak level after normalization: headroom so 16-bit FLAC never clips


@dataclass(frozen=True)
class Renderer:
    name: str = "sine"
    sample_rate: int = DEFAULT_SAMPLE_RATE
    soundfont: Path | None = None  # fluidsynth only; None = pretty_midi's bundled General MIDI font

    def __post_init__(self):
        if self.name not in RENDERERS:
            raise ValueError(f"unknown renderer {self.name!r}; choose from {list(RENDERERS)}")
        if not 4000 <= int(self.sample_rate) <= 96000:
            raise ValueError(f"sample rate {self.sample_rate} Hz is out of range (4000-96000)")
        if self.soundfont is not None and self.name != "fluidsynth":
            raise ValueError("a SoundFont is used by the fluidsynth renderer only")
        if self.soundfont is not None and not Path(self.soundfont).is_file():
            raise ValueError(f"SoundFont {self.soundfont} not found")

    def check_available(self) -> None:
        """Fail before any work when the renderer's libraries are missing (ValueError with the fix)."""
        if self.name == "fluidsynth":
            try:
                import fluidsynth  # noqa: F401
            except (ImportError, OSError) as exc:
                raise ValueError(
                    f"renderer fluidsynth needs pyfluidsynth and the FluidSynth library ({exc}); "
                    "install them (pip install pyfluidsynth; apt-get install fluidsynth) or use --renderer sine"
                ) from None

    def key(self) -> str:
        """The renderer's part of a cache file name."""
        name = self.name
        if self.name == "fluidsynth" and self.soundfont is not None:
            name += "-" + _digest(Path(self.soundfont))[:12]
        return f"{name}-{int(self.sample_rate)}-v{RENDER_VERSION}"

    def describe(self) -> str:
        if self.name == "sine":
            return (f"sine tones (`pretty_midi` `PrettyMIDI.synthesize`, {self.sample_rate} Hz): a proxy for the "
                    "piano the listeners heard, not a piano")
        font = Path(self.soundfont).name if self.soundfont else "pretty_midi's bundled TimGM6mb.sf2"
        return f"FluidSynth with the SoundFont {font} ({self.sample_rate} Hz)"


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def render(midi_path: Path, renderer: Renderer) -> np.ndarray:
    """Mono float32 audio of a MIDI file, peak-normalized to PEAK, lasting at least to the MIDI's end time;
    MidiError when it cannot be rendered."""
    midi = load_midi(midi_path)
    if renderer.name == "sine":
        wave = midi.synthesize(fs=int(renderer.sample_rate))
    else:
        font = str(renderer.soundfont) if renderer.soundfont else None
        wave = midi.fluidsynth(fs=int(renderer.sample_rate), synthesizer=font)
    wave = np.asarray(wave, dtype=np.float64)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if not np.isfinite(peak) or peak == 0.0:
        raise MidiError(f"{midi_path}: renders to silence (no notes outside drum tracks)")
    # Events after the last note (pedal, controller, meta) extend the MIDI's timeline, and so its bars and
    # label grid, but not the synthesized sound: pad with the silence a player would leave there.
    length = int(math.ceil(midi.get_end_time() * renderer.sample_rate))
    wave = np.pad(wave, (0, max(0, length - wave.size)))
    return (wave * (PEAK / peak)).astype(np.float32)


def cached_render(midi_path: Path, renderer: Renderer, cache_dir: Path) -> Path:
    """The cached FLAC of a MIDI file, rendered now if it is not in the cache yet."""
    import soundfile as sf

    target = Path(cache_dir) / f"{_digest(midi_path)[:16]}-{renderer.key()}.flac"
    if target.is_file():
        return target
    wave = render(midi_path, renderer)
    with atomic_path(target) as tmp:
        sf.write(tmp, wave, int(renderer.sample_rate), format="FLAC", subtype="PCM_16")
    return target
