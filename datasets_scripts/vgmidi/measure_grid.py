"""Per-measure annotation values on the package's 2 Hz label grid, timed by the MIDI's bars or spread evenly.

A VGMIDI listener gives one value per measure. Label frame `k` covers `[k / 2, (k + 1) / 2)` s and takes the
value of the measure its middle `(k + 0.5) / 2` falls in (values are held, not interpolated: the listener
gave one value for the whole measure). The measures' start times come from:

- `midi`: the MIDI file's own bar starts (downbeats), when their count equals the piece's `measures`; the
  last measure ends where the MIDI ends;
- `even`: otherwise, `measures` equal slices of the piece's listed `duration` (what the annotation tool's
  timing amounts to when the MIDI's bars cannot be matched to the values).

The grid stops at the end of the audio (the MIDI's end time), or at `duration` when that is earlier in the
`even` case, so no label ever lies beyond the rendered audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsaml.datasets_scripts.common.schema import FRAME_RATE
from dsaml.datasets_scripts.vgmidi.midi_files import MidiTiming


@dataclass(frozen=True)
class MeasureGrid:
    """When each measure starts, and where the label grid ends."""

    starts: np.ndarray  # start time of each measure, seconds
    end_seconds: float  # where the label grid stops
    method: str  # "midi" | "even"

    @property
    def frames(self) -> int:
        return int(math.floor(self.end_seconds * FRAME_RATE + 1e-9))


def measure_grid(measures: int, duration: float, timing: MidiTiming) -> MeasureGrid:
    """Measure start times: the MIDI's bars when they number `measures`, else `measures` even slices."""
    if timing.bar_starts.size == measures:
        return MeasureGrid(timing.bar_starts, timing.end_seconds, "midi")
    starts = np.arange(measures, dtype=np.float64) * (duration / measures)
    return MeasureGrid(starts, min(duration, timing.end_seconds), "even")


def to_frames(values: np.ndarray, grid: MeasureGrid) -> np.ndarray:
    """One value per 2 Hz frame: the value of the measure holding the frame's middle."""
    middles = (np.arange(grid.frames) + 0.5) / FRAME_RATE
    index = np.searchsorted(grid.starts, middles, side="right") - 1
    return np.asarray(values, dtype=np.float32)[np.clip(index, 0, len(values) - 1)]
