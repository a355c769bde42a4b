"""The torch-only resampler: torchaudio's filter for every rate pair, bounded memory, block-by-block equality."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dsaml.modeling.resampling_dsaml import MAX_SAMPLING_RATE, Resampler, check_sampling_rate


def noise(seconds: float, rate: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(0.3 * np.random.default_rng(seed).standard_normal(int(seconds * rate)))


def direct_sinc(x: np.ndarray, orig: int, new: int, j: int, width: int = 6, rolloff: float = 0.99) -> float:
    """Output sample j by the textbook formula, in float64: sum_n x[n] h(n / orig - j / new), where h is the
    Hann-windowed sinc of torchaudio.functional.resample with cutoff rolloff * min(orig, new) / 2."""
    base = rolloff * min(orig, new)
    t = (np.arange(x.size) / orig - j / new) * base
    inside = np.abs(t) <= width
    h = np.where(inside, np.sinc(t) * np.cos(np.clip(t, -width, width) * math.pi / width / 2) ** 2, 0.0)
    return float((x * h).sum() * base / orig)


@pytest.mark.parametrize("orig,new", [(48000, 44100), (16000, 44100), (44100, 16000), (96000, 44100), (8000, 44100)])
def test_matches_torchaudio_in_float64(orig, new):
    torchaudio = pytest.importorskip("torchaudio")
    x = noise(0.5, orig)
    expected = torchaudio.functional.resample(x, orig, new)  # float64: torchaudio's own float32 kernel is off by ~2e-5
    ours = Resampler(orig, new)(x.float())
    assert ours.shape == expected.shape
    assert (ours.double() - expected).abs().max() < 1e-6


@pytest.mark.parametrize("orig,new", [(44101, 44100), (44100, 44101), (11111, 44100), (767_999, 44100)])
def test_coprime_rates_compute_the_same_filter_with_a_small_table(orig, new):
    x = noise(0.05, orig, seed=1)
    resampler = Resampler(orig, new)
    assert not resampler.use_conv and resampler.weights.numel() * 4 < 40e6  # MB, not GB
    out = resampler(x.float())
    assert out.numel() == math.ceil(x.numel() * new / orig)
    for j in (0, 7, out.numel() // 2, out.numel() - 1):
        assert abs(float(out[j]) - direct_sinc(x.numpy(), orig, new, j)) < 1e-6


def test_a_sine_keeps_its_frequency_and_amplitude():
    t = np.arange(44101) / 44101
    out = Resampler(44101, 44100)(torch.from_numpy(np.sin(2 * np.pi * 1000 * t)).float())
    expected = np.sin(2 * np.pi * 1000 * np.arange(out.numel()) / 44100)
    assert np.abs(out.numpy() - expected)[100:-100].max() < 1e-3  # the filter's edges aside


@pytest.mark.parametrize("orig", [22050, 48000, 44101, 16000])
@pytest.mark.parametrize("block", [1, 999, 65536])
def test_blocks_give_exactly_the_whole_signal_output(orig, block):
    x = noise(2.0 if block > 1 else 0.05, orig, seed=2).float()
    resampler = Resampler(orig, 44100)
    stream = resampler.stream()
    streamed = torch.cat([stream.push(x[i : i + block]) for i in range(0, x.numel(), block)] + [stream.flush()])
    assert torch.equal(streamed, resampler(x))
    assert stream.buffer.numel() < resampler.chunk * orig / 44100 + 2 * resampler.taps + block


def test_rate_limits_are_checked_with_the_input_named():
    assert check_sampling_rate(44100.0, "x") == 44100
    with pytest.raises(ValueError, match=r"^song.wav: sample rate 1 Hz is outside the supported 1000-768000 Hz$"):
        check_sampling_rate(1, "song.wav")
    with pytest.raises(ValueError, match="whole number"):
        check_sampling_rate(22050.5, "x")
    with pytest.raises(ValueError, match="resampler output"):
        Resampler(44100, MAX_SAMPLING_RATE + 1)
