"""dsaml.audio: the package's one audio reader."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch

from dsaml.audio.reader import SILENCE_PEAK, AudioReader, audio_duration, load_audio
from dsaml.errors import AudioError


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


def test_an_awkward_sample_rate_decodes_and_gets_features(tmp_path):
    # 44101 Hz shares no factor with 44.1 kHz (torchaudio's resampler asked for 7.8 GB)
    path = tmp_path / "odd_rate.wav"
    sf.write(path, _tone(2.0, 44101), 44101)
    wave, rate = load_audio(path)
    assert rate == 44101
    from dsaml import DSAMLFeatureExtractor

    features = DSAMLFeatureExtractor()(wave, sampling_rate=rate)["input_features"]
    assert features.shape == (1, 4, 51, 128) and torch.isfinite(features).all()


@pytest.mark.parametrize("rate", [1, 500, 800_000])
def test_absurd_sample_rates_are_rejected_naming_the_file(tmp_path, rate):
    path = tmp_path / f"rate_{rate}.wav"
    sf.write(path, np.full(64, 0.5, np.float32), rate, subtype="FLOAT")
    pattern = rf"^{tmp_path}/rate_{rate}\.wav: sample rate {rate} Hz is outside the supported 1000-768000 Hz$"
    with pytest.raises(AudioError, match=pattern):
        load_audio(path)
    with pytest.raises(AudioError, match=pattern):
        audio_duration(path)


def test_a_truncated_mp3_is_an_error_naming_both_durations(tmp_path):
    full = tmp_path / "full.mp3"
    sf.write(full, _tone(45.0, 44100), 44100)
    assert load_audio(full)[0].size == 45 * 44100  # an intact MP3 decodes to its header's length
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 40])
    assert audio_duration(cut) == pytest.approx(45.0)  # the header still says 45 s
    with pytest.raises(AudioError, match=r"cut\.mp3: truncated or damaged file: the header says 45\.00 s but only \d\.\d\d s decode"):
        load_audio(cut)


def test_samples_far_outside_full_scale_are_rejected(tmp_path):
    hot = tmp_path / "hot.wav"  # +6 dBFS overs from a float master: loud, but audio
    sf.write(hot, 4.0 * _tone(0.5, 8000), 8000, subtype="FLOAT")  # peak 2.0
    assert np.abs(load_audio(hot)[0]).max() == pytest.approx(2.0, abs=1e-3)
    wrong = tmp_path / "scaled.wav"
    samples = _tone(0.5, 8000)
    samples[2000] = 50.0
    sf.write(wrong, samples, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"scaled\.wav: samples reach amplitude 50 \(first beyond 4 at 0\.250 s\)"):
        load_audio(wrong)


def test_stereo_channels_that_cancel_are_silent_mono(tmp_path):
    path = tmp_path / "cancel.wav"
    left = _tone(0.5, 8000)
    sf.write(path, np.stack([left, -left], axis=1), 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"cancel\.wav: the channels cancel: their mono mix is silent"):
        load_audio(path)
    assert load_audio(path, mono=False)[0].shape == (2, 4000)  # both channels kept: not silent


@pytest.mark.parametrize("suffix,block", [(".wav", 1000), (".flac", 4096), (".mp3", 10_000)])
def test_blocks_concatenate_to_the_whole_file(tmp_path, suffix, block):
    path = tmp_path / f"stereo{suffix}"
    sf.write(path, _tone(1.3, 16000, channels=2), 16000)
    whole, rate = load_audio(path)
    with AudioReader(path) as reader:
        assert reader.sample_rate == rate and reader.channels == 2
        blocks = list(reader.blocks(block))
    assert all(b.shape == (block,) for b in blocks[:-1]) and len(blocks) > 1
    np.testing.assert_array_equal(np.concatenate(blocks), whole)


def test_decoding_in_blocks_feeds_the_streaming_features(tmp_path):
    from dsaml import DSAMLFeatureExtractor

    path = tmp_path / "song.flac"
    sf.write(path, _tone(3.7, 48000), 48000)
    extractor = DSAMLFeatureExtractor()
    wave, rate = load_audio(path)
    whole = extractor(wave, sampling_rate=rate)["input_features"][0]
    with AudioReader(path) as reader:
        stream = extractor.stream(reader.sample_rate, name=str(path))
        streamed = torch.cat([stream.push(b) for b in reader.blocks(12_345)] + [stream.flush()])
    assert streamed.shape == whole.shape == (7, 51, 128)
    assert (streamed - whole).abs().max() < 1e-5
