"""Aligning a song's step features with an annotation curve, and cutting aligned songs into windows.

A label frame k of a curve starting at `start_seconds` covers the step [start + k/rate, start + (k+1)/rate),
i.e. feature step `start_seconds / step_seconds + k`: the reference code's alignment (DEAM labels start at
15 s, audio segments at 15 s). Every training, personalization and evaluation path goes through here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dsaml.errors import AnnotationError
from dsaml.modeling import DSAMLFeatureExtractor
from dsaml.modeling.sliding_windows_dsaml import window_starts


@dataclass
class AlignedSong:
    """One (song, annotator) pair ready for the model: `features[S, ...]` and `labels[S, 2]` (arousal, valence)."""

    song_id: str
    annotator: str
    features: torch.Tensor
    labels: torch.Tensor
    start_step: int  # index of the first labelled step in the song (for timestamps: start_step * step_seconds)
    waveform: torch.Tensor | None = None  # the aligned audio, only for models with a pretrained global encoder
    harmonic: torch.Tensor | None = None  # `[S, 36]` harmonic view per step, only for models that read it

    @property
    def num_steps(self) -> int:
        return int(self.labels.shape[0])


def song_patches(
    extractor: DSAMLFeatureExtractor, waveform: np.ndarray, sampling_rate: int, name: str
) -> torch.Tensor:
    """All complete steps of a song: `[steps, frames, mels]`."""
    wave = extractor.prepare_waveform(waveform, sampling_rate, name=name)
    return extractor.log_mel_patches(wave)


def check_curve(values: Sequence[float] | np.ndarray, what: str, value_range: tuple[float, float] | None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 1 or array.size == 0:
        raise AnnotationError(f"{what}: expected a non-empty 1-D curve, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise AnnotationError(f"{what}: NaN or infinite value at frame {bad}")
    if value_range is not None:
        low, high = value_range
        if array.min() < low or array.max() > high:
            raise AnnotationError(
                f"{what}: values must lie in [{low}, {high}], found [{array.min():.3f}, {array.max():.3f}]"
            )
    return array


def align(
    patches: torch.Tensor,
    *,
    arousal: Sequence[float],
    valence: Sequence[float],
    start_seconds: float,
    frame_rate: float,
    step_seconds: float,
    song_id: str,
    annotator: str = "",
    value_range: tuple[float, float] | None = (-1.0, 1.0),
    tolerance_steps: int = 1,
    waveform: torch.Tensor | None = None,
    harmonic: torch.Tensor | None = None,
) -> AlignedSong:
    """Cut a song's step features to its annotation and pair them with the (arousal, valence) labels.

    Up to `tolerance_steps` trailing labels beyond the end of the audio are dropped (rounding at the song's end);
    a larger gap means the audio is shorter than its annotation and raises `AnnotationError`.
    """
    who = f"song {song_id!r}" + (f", annotator {annotator!r}" if annotator else "")
    if not math.isclose(frame_rate * step_seconds, 1.0, rel_tol=1e-6):
        raise AnnotationError(
            f"{who}: annotation frame rate {frame_rate} Hz does not match the model's step of {step_seconds} s"
        )
    start = start_seconds / step_seconds
    if start < 0 or not math.isclose(start, round(start), abs_tol=1e-4):
        raise AnnotationError(f"{who}: start_seconds={start_seconds} is not a non-negative multiple of {step_seconds} s")
    start_step = int(round(start))
    a = check_curve(arousal, f"{who} arousal", value_range)
    v = check_curve(valence, f"{who} valence", value_range)
    if a.shape != v.shape:
        raise AnnotationError(f"{who}: arousal has {a.size} frames but valence has {v.size}")
    available = patches.shape[0] - start_step
    missing = a.size - available
    if missing > tolerance_steps:
        audio_s = patches.shape[0] * step_seconds
        need_s = (start_step + a.size) * step_seconds
        raise AnnotationError(
            f"{who}: the annotation needs {need_s:.1f} s of audio but the audio has {audio_s:.1f} s "
            f"({missing} steps missing)"
        )
    n = min(a.size, available)
    labels = torch.from_numpy(np.stack([a[:n], v[:n]], axis=-1))
    if waveform is not None:
        per_step = waveform.numel() // patches.shape[0]
        waveform = waveform[start_step * per_step : (start_step + n) * per_step]
    if harmonic is not None:
        harmonic = harmonic[start_step : start_step + n]
    return AlignedSong(song_id, annotator, patches[start_step : start_step + n], labels, start_step, waveform,
                       harmonic)


def crop(song: AlignedSong, start: int, length: int) -> AlignedSong:
    """The steps [start, start + length) of an aligned song."""
    waveform = None
    if song.waveform is not None:
        per_step = song.waveform.numel() // song.num_steps
        waveform = song.waveform[start * per_step : (start + length) * per_step]
    return AlignedSong(
        song.song_id, song.annotator, song.features[start : start + length], song.labels[start : start + length],
        song.start_step + start, waveform,
        None if song.harmonic is None else song.harmonic[start : start + length],
    )


def windows(song: AlignedSong, window_steps: int, hop_steps: int | None = None) -> list[AlignedSong]:
    """An aligned song cut into training-length windows (see `window_starts`)."""
    return [crop(song, s, window_steps) for s in window_starts(song.num_steps, window_steps, hop_steps)]

def align_annotations(
    patches: torch.Tensor,
    annotation: Mapping,
    *,
    step_seconds: float,
    song_id: str,
    annotator: str = "",
    value_range: tuple[float, float] | None = (-1.0, 1.0),
    annotation_name: str | None = None,
    harmonic: torch.Tensor | None = None,
) -> AlignedSong:
    """`dsaml.data.alignment.align` for an annotation read by `read_annotations`; errors name the annotation file."""
    try:
        return align(
            patches, arousal=annotation["arousal"], valence=annotation["valence"],
            start_seconds=annotation["start_seconds"], frame_rate=1.0 / step_seconds, step_seconds=step_seconds,
            song_id=song_id, annotator=annotator, value_range=value_range, harmonic=harmonic,
        )
    except AnnotationError as exc:
        if annotation_name:
            raise AnnotationError(f"{annotation_name}: {exc}") from exc
        raise
