"""Reading MIDI files (pretty_midi) and their bar start times, with one error type naming the file."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsaml.errors import MidiError

# A downbeat this close to the MIDI's end (as a fraction of the bar before it) is where the last bar ends,
# not a new bar: pretty_midi lists a beat at the end time when the last note ends exactly on a bar line.
TRAILING_BAR_FRACTION = 0.1


@dataclass(frozen=True)
class MidiTiming:
    """Where the bars of a MIDI file start, and where the file ends."""

    bar_starts: np.ndarray  # seconds
    end_seconds: float  # the end of the last note or event


def load_midi(path: Path):
    """A `pretty_midi.PrettyMIDI`, or MidiError naming the file."""
    import pretty_midi

    try:
        with warnings.catch_warnings():
            # pretty_midi warns about tempo events on non-zero tracks, common in these files and harmless here
            warnings.simplefilter("ignore", RuntimeWarning)
            return pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # mido / pretty_midi raise many types (OSError, EOFError, KeyError, ValueError)
        raise MidiError(f"{path}: not a readable MIDI file ({type(exc).__name__}: {exc})") from None


def midi_timing(midi) -> MidiTiming:
    """Bar start times and end time of a parsed MIDI file (see TRAILING_BAR_FRACTION)."""
    end = float(midi.get_end_time())
    downbeats = np.asarray(midi.get_downbeats(), dtype=np.float64)
    downbeats = downbeats[downbeats < end] if end > 0 else downbeats[:1]
    if downbeats.size >= 2 and end - downbeats[-1] < TRAILING_BAR_FRACTION * (downbeats[-1] - downbeats[-2]):
        downbeats = downbeats[:-1]
    return MidiTiming(downbeats, end)
