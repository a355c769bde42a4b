"""The package's one audio reader: every dataset builder, training, personalization and prediction path decodes
audio through `load_audio`, so a broken file fails the same way (an `AudioError` naming it) wherever it is met.

Decoding uses soundfile only (libsndfile >= 1.1 reads WAV, FLAC, OGG and MP3): no torchcodec, no FFmpeg.
Only numpy and soundfile are imported, so importing this module stays cheap for the CLI.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf

__all__ = ["AUDIO_EXTENSIONS", "AudioError", "AudioSource", "SILENCE_PEAK", "audio_duration", "load_audio"]

# the file endings read as audio (folders given to `dsaml predict`, songs of a dataset release), in order of
# preference when a song has several files
AUDIO_EXTENSIONS = (".mp3", ".flac", ".wav", ".ogg", ".oga", ".aif", ".aiff")

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

# Peak amplitude below which a file is taken for silence: -100 dBFS, below the 16-bit quantisation step (3e-5),
# so a real recording never falls under it, while an all-zero (or dithered-zero) file always does.
SILENCE_PEAK = 1e-5


class AudioError(ValueError):
    """Audio that cannot be used: the message names the file (or the given name) and what is wrong with it."""


def _describe(source: AudioSource, name: str | None) -> str:
    if name:
        return str(name)
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return str(getattr(source, "name", None) or "<audio bytes>")


def _open_target(source: AudioSource, label: str):
    """What soundfile should open: a path that exists, or a seekable binary file object."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        # Checked first: libsndfile reports an undecodable file as "does not exist", which misleads.
        if not path.is_file():
            raise AudioError(f"{label}: audio file not found")
        return path
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError(f"{label}: empty audio data (0 bytes)")
        return io.BytesIO(bytes(source))
    if hasattr(source, "read"):
        if hasattr(source, "seekable") and not source.seekable():
            return io.BytesIO(source.read())  # libsndfile needs to seek (headers, MP3 frame scanning)
        return source
    raise AudioError(f"{label}: expected a path, bytes or a binary file object, got {type(source).__name__}")


def load_audio(source: AudioSource, *, name: str | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode an audio file and return `(waveform, sample_rate)`.

    Args:
        source: a path, the file's bytes, or a binary file object.
        name: how errors refer to the audio (default: the path, or the file object's name).
        mono: average the channels into a 1-D `[samples]` array (the default, what the model takes); otherwise
            return `[channels, samples]` (the torch/torchaudio layout).

    Returns:
        float32 samples in [-1, 1] (integer PCM is scaled by soundfile) and the file's own sample rate
        (no resampling here: the feature extractor resamples).

    Raises:
        AudioError: the file is missing or cannot be decoded, or has no samples, non-finite samples or only
            silence (peak below `SILENCE_PEAK`), each with a message naming the file.
    """
    label = _describe(source, name)
    target = _open_target(source, label)
    try:
        data, sample_rate = sf.read(target, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        raise AudioError(f"{label}: cannot decode audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{label}: the audio has no samples")
    if not np.isfinite(data).all():
        bad = int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0])
        raise AudioError(f"{label}: NaN or infinite sample at {bad / sample_rate:.3f} s")
    peak = float(np.abs(data).max())
    if peak < SILENCE_PEAK:
        raise AudioError(f"{label}: the audio is silent (peak amplitude {peak:.2e} < {SILENCE_PEAK:.0e})")
    if mono:
        waveform = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    else:
        waveform = data.T
    return np.ascontiguousarray(waveform, dtype=np.float32), int(sample_rate)


def audio_duration(source: AudioSource, *, name: str | None = None) -> float:
    """Duration in seconds from the file header (no decoding; MP3 lengths are libsndfile's estimate, which
    can differ from the decoded length by a few milliseconds).

    Raises:
        AudioError: the file is missing, cannot be opened, or has no samples.
    """
    label = _describe(source, name)
    target = _open_target(source, label)
    # Reading the header moves a caller's file object: put it back so the audio can still be decoded from it.
    position = target.tell() if hasattr(target, "seekable") and target.seekable() else None
    try:
        info = sf.info(target)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        raise AudioError(f"{label}: cannot decode audio ({exc})") from exc
    finally:
        if position is not None:
            target.seek(position)
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{label}: the audio has no samples")
    return float(info.frames) / float(info.samplerate)
