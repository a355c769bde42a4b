"""DSAMLFeatureExtractor: the reference log-mel front end, resampling, padding and bad audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio
from conftest import tone

from dsaml import DSAMLFeatureExtractor


def test_patches_match_reference_per_segment_log_mel(extractor):
    audio = tone(3.2)
    batch = extractor(audio, sampling_rate=44100)
    assert batch["input_features"].shape == (1, 6, 51, 128)  # 6 complete 0.5 s steps, the partial one dropped
    assert batch["attention_mask"].tolist() == [[1] * 6]
    # the reference code: MelSpectrogram(44.1 kHz, n_fft = win = 2646, hop 441, 128 mels) on each 0.5 s
    # segment on its own, log(mel + 1e-6), time x frequency
    mel = torchaudio.transforms.MelSpectrogram(44100, n_fft=2646, win_length=2646, hop_length=441, n_mels=128)
    segment = torch.from_numpy(audio[3 * 22050 : 4 * 22050])
    expected = torch.log(mel(segment) + 1e-6).T
    torch.testing.assert_close(batch["input_features"][0, 3], expected)


def test_resamples_any_rate(extractor):
    at_44k = extractor(tone(4.0, sr=44100, freq=300), sampling_rate=44100)["input_features"]
    at_16k = extractor(tone(4.0, sr=16000, freq=300), sampling_rate=16000)["input_features"]
    assert at_16k.shape == at_44k.shape == (1, 8, 51, 128)
    # same tone: the dominant mel band agrees whatever the input rate
    assert at_16k[0].mean((0, 1)).argmax() == at_44k[0].mean((0, 1)).argmax()
    assert extractor.num_steps(16000 * 4, 16000) == 8


def test_batches_of_different_lengths_are_padded_with_a_mask(extractor):
    batch = extractor([tone(2.0), tone(5.1), tone(0.6)], sampling_rate=44100)
    assert batch["input_features"].shape == (3, 10, 51, 128)
    assert batch["attention_mask"].sum(1).tolist() == [4, 10, 1]
    assert (batch["input_features"][0, 4:] == extractor.padding_value).all()
    clipped = extractor([tone(2.0), tone(5.1)], sampling_rate=44100, max_steps=3)
    assert clipped["input_features"].shape[1] == 3
    as_numpy = extractor(tone(1.0), sampling_rate=44100, return_tensors="np")
    assert isinstance(as_numpy["input_features"], np.ndarray)


def test_stereo_channels_first_is_downmixed(extractor):
    # as in every transformers feature extractor, a 2-D array is a batch; multichannel songs go in a list
    mono = tone(1.0)
    stereo = np.stack([mono, mono])
    torch.testing.assert_close(
        extractor([stereo], sampling_rate=44100)["input_features"], extractor(mono, sampling_rate=44100)["input_features"]
    )
    with pytest.raises(ValueError, match=r"\(channels, samples\)"):
        extractor([stereo.T], sampling_rate=44100)


def test_global_waveform_for_pretrained_encoders():
    extractor = DSAMLFeatureExtractor(return_global_waveform=True)
    batch = extractor([tone(1.2), tone(2.0)], sampling_rate=44100)
    assert batch["global_input_values"].shape == (2, 4 * 22050)
    assert batch["global_input_values"][0, 2 * 22050 :].abs().max() == 0


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
    with pytest.raises(ValueError, match="positive"):
        extractor(tone(1.0), sampling_rate=-5)


def test_round_trips_through_save_pretrained(tmp_path, extractor):
    extractor.save_pretrained(tmp_path)
    loaded = DSAMLFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == extractor.to_dict()
    audio = tone(1.5)
    assert torch.equal(loaded(audio, sampling_rate=44100)["input_features"], extractor(audio, sampling_rate=44100)["input_features"])
