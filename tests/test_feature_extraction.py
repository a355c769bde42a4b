"""DSAMLFeatureExtractor: the torch front end equals the reference torchaudio features; padding, streaming, bad audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tone
from torchaudio_reference import torchaudio_features

from dsaml import DSAMLFeatureExtractor
from dsaml.modeling.step_audio_dsaml import step_samples


def music(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Real-ish audio: a 220 Hz harmonic tone (11 partials, vibrato, slow tremolo) over a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    partials = sum(0.2 / k * np.sin(2 * np.pi * 220 * k * t + 3 * np.sin(2 * np.pi * 5 * t)) for k in range(1, 12))
    return (partials * (0.5 + 0.5 * np.cos(2 * np.pi * 0.7 * t)) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def reference_features(audio: np.ndarray, sr: int) -> torch.Tensor:
    """Today's (and the reference code's) front end: torchaudio resample, MelSpectrogram per 0.5 s step, log."""
    pytest.importorskip("torchaudio")
    return torchaudio_features(audio, sr)


# Measured max |ours - torchaudio| of the log-mel (natural log units; values span about -14 .. 5) on `music`,
# with ~2x margin. At 44.1 kHz only float rounding differs. With resampling, torchaudio's float32 filter
# kernel is itself off by up to 2.5e-5 in the waveform (ours is built in float64 and within 3e-7 of
# torchaudio's float64 result); log(mel + 1e-6) magnifies that in the nearly empty bands above the input's
# Nyquist frequency, hence the larger bounds for low input rates. The means stay below 2e-4.
PARITY_MAX = {44100: 2e-6, 48000: 3e-4, 96000: 3e-4, 22050: 2e-3, 32000: 3e-3, 16000: 2e-2, 8000: 1.2e-2}


@pytest.mark.parametrize("sr", list(PARITY_MAX))
def test_log_mel_matches_torchaudio_at_every_common_rate(extractor, sr):
    audio = music(6.3, sr)
    ours = extractor(audio, sampling_rate=sr)["input_features"][0]
    expected = reference_features(audio, sr)
    assert ours.shape == expected.shape == (12, 51, 128)
    difference = (ours - expected).abs()
    assert difference.max() < PARITY_MAX[sr]
    assert difference.mean() < 4e-4


def test_one_step_is_the_log_mel_of_its_own_half_second(extractor):
    audio = tone(3.2)
    batch = extractor(audio, sampling_rate=44100)
    assert batch["input_features"].shape == (1, 6, 51, 128)  # 6 complete 0.5 s steps, the partial one dropped
    alone = extractor(audio[3 * 22050 : 4 * 22050], sampling_rate=44100)["input_features"][0, 0]
    # the same numbers up to float32 rounding: a batch of 6 steps and a single step may take different BLAS
    # kernels (measured: 3.6e-7 apart on one CPU, bit-equal on another)
    torch.testing.assert_close(batch["input_features"][0, 3], alone, atol=1e-5, rtol=0)
    # a 440 Hz tone: 549.6 mel of 3923.3 (22.05 kHz) over 129 equal intervals puts its peak at corner 18,
    # the centre of filter 17, far above the noise-only top band
    profile = alone.mean(0)
    assert profile.argmax() == 17 and profile[17] - profile[-1] > 8  # measured 9.3


def test_awkward_rates_resample_with_bounded_memory(extractor):
    # 44101 Hz shares no factor with 44.1 kHz: torchaudio's kernel would be 7.8 GB; the same tone must
    # give (almost) the same features as at 44.1 kHz
    at_44101 = extractor(tone(3.0, sr=44101, freq=300), sampling_rate=44101)["input_features"]
    at_44100 = extractor(tone(3.0, sr=44100, freq=300), sampling_rate=44100)["input_features"]
    assert at_44101.shape == at_44100.shape == (1, 6, 51, 128)
    resampler = extractor.resampler(44101)
    assert resampler.weights.numel() < 1_000_000 and not resampler.use_conv
    tone_band = at_44100[0].mean((0, 1)).argmax()
    assert at_44101[0].mean((0, 1)).argmax() == tone_band
    assert (at_44101[0, :, :, tone_band] - at_44100[0, :, :, tone_band]).abs().max() < 0.05


@pytest.mark.parametrize("rate", [1, 999, 768_001, 44100.5, "fast"])
def test_absurd_sampling_rates_are_rejected(extractor, rate):
    with pytest.raises(ValueError, match=r"^sampling_rate: sample rate .*(outside|whole number|number of Hz)"):
        extractor(tone(1.0), sampling_rate=rate)
    with pytest.raises(ValueError, match="song.wav"):
        extractor.prepare_waveform(tone(1.0), rate, name="song.wav")


@pytest.mark.parametrize("sr,block", [(44100, 1000), (48000, 7777), (16000, 65536), (44101, 30000), (22050, 22050)])
def test_streamed_features_equal_whole_song_features(extractor, sr, block):
    audio = music(7.3, sr, seed=1)
    whole = extractor(audio, sampling_rate=sr)["input_features"][0]
    stream = extractor.stream(sr, name="song.wav")
    pieces = [stream.push(audio[i : i + block]) for i in range(0, audio.size, block)] + [stream.flush()]
    streamed = torch.cat(pieces)
    assert streamed.shape == whole.shape == (14, 51, 128)
    assert (streamed - whole).abs().max() < 1e-5


def test_streaming_rejects_what_the_whole_song_path_rejects(extractor):
    silent = extractor.stream(44100, name="quiet.wav")
    silent.push(np.zeros(44100, dtype=np.float32))
    with pytest.raises(ValueError, match="quiet.wav: audio is silent"):
        silent.flush()
    short = extractor.stream(44100, name="short.wav")
    short.push(tone(0.3))
    with pytest.raises(ValueError, match="short.wav: audio is shorter than one 0.5 s step"):
        short.flush()
    with pytest.raises(ValueError, match="nan.wav: audio contains NaN"):
        extractor.stream(44100, name="nan.wav").push(np.full(100, np.nan, dtype=np.float32))


def test_batches_of_different_lengths_are_padded_with_a_mask(extractor):
    batch = extractor([tone(2.0), tone(5.1), tone(0.6)], sampling_rate=44100)
    assert batch["input_features"].shape == (3, 10, 51, 128)
    assert batch["attention_mask"].sum(1).tolist() == [4, 10, 1]
    assert (batch["input_features"][0, 4:] == extractor.padding_value).all()
    clipped = extractor([tone(2.0), tone(5.1)], sampling_rate=44100, max_steps=3)
    assert clipped["input_features"].shape[1] == 3
    as_numpy = extractor(tone(1.0), sampling_rate=44100, return_tensors="np")
    assert isinstance(as_numpy["input_features"], np.ndarray)
    assert extractor.num_steps(16000 * 4, 16000) == 8
    for samples in (44101 * 2 - 3, 44101 * 2 - 1):  # 88198 and 88200 samples at 44.1 kHz: 3 and 4 steps
        assert extractor.num_steps(samples, 44101) == extractor(tone(2.0, sr=44101)[:samples], sampling_rate=44101)["input_features"].shape[1]


def test_stereo_channels_first_is_downmixed(extractor):
    # as in every transformers feature extractor, a 2-D array is a batch; multichannel songs go in a list
    mono = tone(1.0)
    stereo = np.stack([mono, mono])
    torch.testing.assert_close(
        extractor([stereo], sampling_rate=44100)["input_features"], extractor(mono, sampling_rate=44100)["input_features"]
    )
    with pytest.raises(ValueError, match=r"\(channels, samples\)"):
        extractor([stereo.T], sampling_rate=44100)
    with pytest.raises(ValueError, match="cancel.wav: audio is silent"):  # channels that cancel: silent mono
        extractor([np.stack([mono, -mono])], sampling_rate=44100, names=["cancel.wav"])


def test_global_waveform_for_pretrained_encoders():
    extractor = DSAMLFeatureExtractor(return_global_waveform=True)
    first, second = tone(1.2), tone(2.0, freq=220)
    batch = extractor([first, second], sampling_rate=44100)
    assert batch["global_input_values"].shape == (2, 4 * 22050)
    assert torch.equal(batch["global_input_values"][0, : 2 * 22050], torch.from_numpy(first[: 2 * 22050]))
    assert batch["global_input_values"][0, 2 * 22050 :].abs().max() == 0
    # the one slicing rule: steps [1, 3) of the song are its samples 22050 .. 66149
    assert torch.equal(step_samples(batch["global_input_values"][1], 1, 3, 22050), torch.from_numpy(second[22050:66150]))
    assert step_samples(torch.ones(10), 1, 3, 4).tolist() == [1, 1, 1, 1, 1, 1, 0, 0]  # zero-padded past the end


@pytest.mark.parametrize(
    "audio,message",
    [
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.full(44100, np.nan, dtype=np.float32), "NaN"),
        (np.zeros(44100, dtype=np.float32), "silent"),
        (tone(0.3), "shorter than one 0.5 s step"),
        (np.ones((2, 2, 100), dtype=np.float32), "expected mono"),
    ],
)
def test_bad_audio_raises_naming_the_input(extractor, audio, message):
    with pytest.raises(ValueError, match=message) as error:
        extractor([tone(1.0), audio], sampling_rate=44100, names=["ok.wav", "broken.wav"])
    assert "broken.wav" in str(error.value)


def test_sampling_rate_is_required(extractor):
    with pytest.raises(ValueError, match="sampling_rate"):
        extractor(tone(1.0))


def test_round_trips_through_save_pretrained(tmp_path, extractor):
    extractor(tone(1.0, sr=16000), sampling_rate=16000)  # fills the caches, which must not be saved
    extractor.save_pretrained(tmp_path)
    saved = (tmp_path / "preprocessor_config.json").read_text()
    assert "_resamplers" not in saved and "_log_mel" not in saved
    loaded = DSAMLFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == extractor.to_dict()
    audio = tone(1.5)
    assert torch.equal(loaded(audio, sampling_rate=44100)["input_features"], extractor(audio, sampling_rate=44100)["input_features"])
