"""The package's one audio reader: every dataset builder, training, personalization and prediction path decodes
audio through `load_audio` (whole files) or `AudioReader.blocks` (block by block, for streaming), so a broken
file fails the same way (an `AudioError` naming it) wherever it is met.

Decoding uses soundfile only (libsndfile >= 1.1 reads WAV, FLAC, OGG and MP3): no torchcodec, no FFmpeg.
Only numpy and soundfile are imported at module level, so importing this module stays cheap for the CLI (the
sample-rate limits live with the resampler in `dsaml.modeling` and are imported when a file is opened).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf

from dsaml.errors import AudioError
from dsaml.modeling.resampling_dsaml import check_sampling_rate

__all__ = ["AUDIO_EXTENSIONS", "LOUD_PEAK", "SILENCE_PEAK", "AudioError", "AudioReader", "AudioSource",
           "audio_duration", "load_audio"]

# the file endings read as audio (folders given to `dsaml predict`, songs of a dataset release), in order of
# preference when a song has several files
AUDIO_EXTENSIONS = (".mp3", ".flac", ".wav", ".ogg", ".oga", ".aif", ".aiff")

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

# Peak amplitude below which a file is taken for silence: -100 dBFS, below the 16-bit quantisation step (3e-5),
# so a real recording never falls under it, while an all-zero (or dithered-zero) file always does.
SILENCE_PEAK = 1e-5
# Peak amplitude above which samples are taken for a wrong scale, not loud audio: float files of a hot master or
# with inter-sample overs reach 1-2 (+6 dBFS); +12 dBFS and beyond means integer PCM values stored as floats,
# an unnormalised render, or garbage, and would shift every log-mel value the model sees.
LOUD_PEAK = 4.0
# Blocks `AudioReader.blocks` decodes at once by default: 6 s at 44.1 kHz, ~1 MB of float32 per channel.
BLOCK_FRAMES = 1 << 18
# A decoded length this much shorter than the header's (and by this share of it) is a truncated or damaged
# file. Smaller gaps are tolerated: libsndfile estimates the length of an MP3 without a Xing/VBRI frame from
# its bitrate, and codec padding moves lengths by a few milliseconds.
TRUNCATION_SECONDS = 1.0
TRUNCATION_SHARE = 0.05

_DECODE_ERRORS = (sf.SoundFileError, RuntimeError, TypeError, ValueError, EOFError)


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


class AudioReader:
    """An opened audio file, decoded block by block (`blocks`), with every check of `load_audio`.

    Opening reads the header (sample rate, channels, frames) and rejects a sample rate outside what the
    resampler accepts; the per-sample checks (finite, not far beyond full scale) run on each block as it is
    decoded, the whole-file checks (not silent, before and after the downmix; not truncated) after the last.
    Use as a context manager, or call `close()`.
    """

    def __init__(self, source: AudioSource, *, name: str | None = None):
        self.label = _describe(source, name)
        target = _open_target(source, self.label)
        try:
            self._file = sf.SoundFile(target)
        except _DECODE_ERRORS as exc:
            raise AudioError(f"{self.label}: cannot decode audio ({exc})") from exc
        self.sample_rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.header_frames = int(self._file.frames)

        try:
            check_sampling_rate(self.sample_rate, self.label)
        except ValueError as exc:
            self.close()
            raise AudioError(str(exc)) from None

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def blocks(self, block_frames: int = BLOCK_FRAMES, *, mono: bool = True) -> Iterator[np.ndarray]:
        """float32 blocks of `block_frames` frames (the last shorter): `[frames]` averaged over the channels
        (`mono=True`), otherwise `[channels, frames]`. Raises `AudioError` naming the file, possibly after
        some blocks were yielded (silence and truncation are known only at the end)."""
        decoded, peak, mono_peak = 0, 0.0, 0.0
        while True:
            try:
                data = self._read(block_frames)
            except _DECODE_ERRORS as exc:
                raise AudioError(f"{self.label}: cannot decode audio ({exc})") from exc
            if data.shape[0] == 0:
                break
            self._check_samples(data, decoded)
            peak = max(peak, float(np.abs(data).max()))
            block = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
            mono_peak = max(mono_peak, float(np.abs(block).max()))
            decoded += data.shape[0]
            yield np.ascontiguousarray(block if mono else data.T, dtype=np.float32)
        self._check_whole(decoded, peak, mono_peak if mono else peak)

    def _read(self, frames: int) -> np.ndarray:
        if self._file.format != "MP3":
            return self._file.read(frames, dtype="float32", always_2d=True)
        # SoundFile.read seeks to its own position after every read; for MP3 libsndfile's seek drops the
        # decoder's bit reservoir and the following blocks decode to garbage. libsndfile's sequential read
        # (what SoundFile.read calls between its seeks) decodes the stream as one read of the whole file does.
        out = np.empty((frames, self.channels), dtype=np.float32)
        count = sf._snd.sf_readf_float(self._file._file, sf._ffi.cast("float *", out.ctypes.data), frames)
        return out[:count]

    def _check_samples(self, data: np.ndarray, offset: int) -> None:
        finite = np.isfinite(data)
        if not finite.all():
            bad = offset + int(np.flatnonzero(~finite.all(axis=1))[0])
            raise AudioError(f"{self.label}: NaN or infinite sample at {bad / self.sample_rate:.3f} s")
        loud = np.abs(data).max(axis=1) > LOUD_PEAK
        if loud.any():
            at = (offset + int(np.flatnonzero(loud)[0])) / self.sample_rate
            raise AudioError(
                f"{self.label}: samples reach amplitude {float(np.abs(data).max()):.3g} (first beyond {LOUD_PEAK:g} "
                f"at {at:.3f} s), far outside [-1, 1]: wrongly scaled audio, e.g. integer values stored as float"
            )

    def _check_whole(self, decoded: int, peak: float, mono_peak: float) -> None:
        if decoded == 0:
            raise AudioError(f"{self.label}: the audio has no samples")
        if peak < SILENCE_PEAK:
            raise AudioError(f"{self.label}: the audio is silent (peak amplitude {peak:.2e} < {SILENCE_PEAK:.0e})")
        if mono_peak < SILENCE_PEAK:
            raise AudioError(
                f"{self.label}: the channels cancel: their mono mix is silent (peak {mono_peak:.2e} < "
                f"{SILENCE_PEAK:.0e}, channels peak at {peak:.2e}); fix the file's polarity or pass one channel"
            )
        missing = (self.header_frames - decoded) / self.sample_rate
        if missing > max(TRUNCATION_SECONDS, TRUNCATION_SHARE * self.header_frames / self.sample_rate):
            raise AudioError(
                f"{self.label}: truncated or damaged file: the header says {self.header_frames / self.sample_rate:.2f} s "
                f"but only {decoded / self.sample_rate:.2f} s decode"
            )


def load_audio(source: AudioSource, *, name: str | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode an audio file and return `(waveform, sample_rate)`.

    Args:
        source: a path, the file's bytes, or a binary file object.
        name: how errors refer to the audio (default: the path, or the file object's name).
        mono: average the channels into a 1-D `[samples]` array (the default, what the model takes); otherwise
            return `[channels, samples]` (the torch layout).

    Returns:
        float32 samples (integer PCM is scaled by soundfile to [-1, 1]) and the file's own sample rate
        (no resampling here: the feature extractor resamples).

    Raises:
        AudioError: the file is missing or cannot be decoded; its sample rate is outside 1 kHz-768 kHz; it has
            no samples, non-finite samples, samples beyond `LOUD_PEAK`, only silence (peak below
            `SILENCE_PEAK`, also after the downmix), or decodes to far fewer samples than its header says
            (see `TRUNCATION_SECONDS`); each with a one-line message naming the file.
    """
    with AudioReader(source, name=name) as reader:
        # one block when the header's length is right (no concatenation copy), more if it undercounts; capped
        # (12 min at 44.1 kHz) because soundfile allocates what is asked and a corrupt header can ask for TBs
        blocks = list(reader.blocks(min(max(reader.header_frames, 1) + 1, 1 << 25), mono=mono))
        rate = reader.sample_rate
    waveform = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=-1)
    return np.ascontiguousarray(waveform, dtype=np.float32), rate


def audio_duration(source: AudioSource, *, name: str | None = None) -> float:
    """Duration in seconds from the file header (no decoding; MP3 lengths are libsndfile's estimate, which
    can differ from the decoded length by a few milliseconds).

    Raises:
        AudioError: the file is missing, cannot be opened, has no samples or a sample rate outside 1 kHz-768 kHz.
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

    try:
        check_sampling_rate(info.samplerate, label)
    except ValueError as exc:
        raise AudioError(str(exc)) from None
    return float(info.frames) / float(info.samplerate)
