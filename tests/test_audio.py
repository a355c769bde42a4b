"""dsaml.audio: the package's one audio reader."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from dsaml.audio import SILENCE_PEAK, AudioError, audio_duration, load_audio


def _tone(seconds=1.0, rate=16000, channels=1, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    if channels == 1:
        return wave.astype(np.float32)
    return np.stack([wave, 0.25 * np.ones_like(wave)], axis=1).astype(np.float32)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_decodes_every_supported_format_to_mono_float32(tmp_path, suffix):
    path = tmp_path / f"tone{suffix}"
    sf.write(path, _tone(1.0, 16000), 16000)
    wave, rate = load_audio(path)
    assert rate == 16000
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - 16000) < 2000  # MP3/OGG add codec padding
    assert 0.3 < np.abs(wave).max() <= 1.0


def test_channels_are_averaged_or_kept(tmp_path):
    path = tmp_path / "stereo.wav"
    stereo = _tone(0.5, 8000, channels=2)
    sf.write(path, stereo, 8000, subtype="FLOAT")
    mono, _ = load_audio(path)
    np.testing.assert_allclose(mono, stereo.mean(axis=1), atol=1e-6)
    both, _ = load_audio(str(path), mono=False)
    assert both.shape == (2, stereo.shape[0])  # [channels, samples], the torch layout
    np.testing.assert_allclose(both[1], stereo[:, 1], atol=1e-6)


def test_bytes_and_file_objects(tmp_path):
    path = tmp_path / "tone.flac"
    sf.write(path, _tone(0.5, 8000), 8000)
    data = path.read_bytes()
    from_path, rate = load_audio(path)
    from_bytes, rate_b = load_audio(data)
    with open(path, "rb") as handle:
        from_file, _ = load_audio(handle)

    class Stream(io.RawIOBase):  # a non-seekable stream (e.g. a network response)
        def __init__(self, payload):
            self._buffer = io.BytesIO(payload)

        def readable(self):
            return True

        def readinto(self, b):
            chunk = self._buffer.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    from_stream, _ = load_audio(Stream(data))
    assert rate == rate_b == 8000
    for other in (from_bytes, from_file, from_stream):
        np.testing.assert_array_equal(other, from_path)


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.mp3"
    with pytest.raises(AudioError, match=r"nope\.mp3: audio file not found"):
        load_audio(missing)
    with pytest.raises(AudioError, match="not found"):
        audio_duration(missing)
    assert issubclass(AudioError, ValueError)


def test_corrupt_file_is_named(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file" * 10)
    with pytest.raises(AudioError, match=r"broken\.wav: cannot decode audio"):
        load_audio(bad)
    with pytest.raises(AudioError, match=r"broken\.wav: cannot decode audio"):
        audio_duration(bad)
    with pytest.raises(AudioError, match="song 7: cannot decode"):
        load_audio(b"garbage" * 50, name="song 7")
    with pytest.raises(AudioError, match="empty audio data"):
        load_audio(b"")


def test_truncated_flac_is_an_error(tmp_path):
    good = tmp_path / "good.flac"
    sf.write(good, np.random.default_rng(0).uniform(-0.5, 0.5, 44100).astype(np.float32), 44100)
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(AudioError, match=r"truncated\.flac"):
        load_audio(truncated)


def test_empty_nan_and_silent_audio_are_rejected(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav: the audio has no samples"):
        load_audio(empty)
    with pytest.raises(AudioError, match="no samples"):
        audio_duration(empty)

    nan = tmp_path / "nan.wav"
    samples = _tone(0.1, 8000)
    samples[400] = np.nan
    sf.write(nan, samples, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: NaN or infinite sample at 0\.050 s"):
        load_audio(nan)

    silent = tmp_path / "silent.flac"
    sf.write(silent, np.zeros(8000, np.float32), 8000)
    with pytest.raises(AudioError, match=r"silent\.flac: the audio is silent"):
        load_audio(silent)
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.full(800, SILENCE_PEAK * 20, np.float32), 8000, subtype="FLOAT")
    assert load_audio(quiet)[0].size == 800  # very quiet is not silent


def test_duration_is_read_from_the_header(tmp_path):
    path = tmp_path / "two_seconds.flac"
    sf.write(path, _tone(2.0, 22050), 22050)
    assert audio_duration(path) == pytest.approx(2.0)
    with open(path, "rb") as handle:
        handle.seek(0)
        assert audio_duration(handle) == pytest.approx(2.0)
        assert handle.tell() == 0  # the caller's position is restored
        assert load_audio(handle)[0].size == 44100
