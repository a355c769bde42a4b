"""Log-mel spectrograms of fixed-length segments in torch alone, equal to the reference code's torchaudio features.

The reference code applies `torchaudio.transforms.MelSpectrogram(sample_rate, n_fft, win_length, hop_length,
n_mels)` with its defaults (centred frames with reflect padding, periodic Hann window, power 2, HTK mel scale
from 0 Hz to sample_rate // 2, no filter normalisation) to every 0.5 s segment on its own, then takes
`log(mel + eps)`. This module computes the same with `torch.stft` and a mel filter bank built here, so the
remote code needs no torchaudio. (`transformers.audio_utils.spectrogram` computes the same in numpy, frame by
frame in Python: about 3x slower on a 10 min song.)
"""

from __future__ import annotations

import math

import torch

__all__ = ["LogMelSpectrogram", "htk_mel_filter_bank"]

# Segments transformed at once: bounds the complex STFT held in memory (64 steps of 0.5 s: ~35 MB)
# without making the FFT calls so small that their overhead shows.
_SEGMENTS_PER_CHUNK = 64


def htk_mel_filter_bank(num_frequency_bins: int, num_mel_bins: int, sampling_rate: int) -> torch.Tensor:
    """`[num_mel_bins, num_frequency_bins]` triangular filters, equally spaced on the HTK mel scale
    (mel = 2595 log10(1 + f / 700)) from 0 Hz to sampling_rate // 2, peak 1, no area normalisation."""
    # float32 throughout, in torchaudio's order of operations: the filters then equal those of the torchaudio
    # front end the models were trained with (computed in float64 they differ by up to 1.3e-5)
    top = float(sampling_rate // 2)
    frequencies = torch.linspace(0.0, top, num_frequency_bins)
    mels = torch.linspace(0.0, 2595.0 * math.log10(1.0 + top / 700.0), num_mel_bins + 2)
    corners = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    widths = corners[1:] - corners[:-1]
    slopes = corners[None, :] - frequencies[:, None]  # [bins, mels + 2]
    rising = (-1.0 * slopes[:, :-2]) / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    return torch.max(torch.zeros(1), torch.min(rising, falling)).T.contiguous()


class LogMelSpectrogram:
    """`[segments, samples]` -> `[segments, frames, num_mel_bins]` log-mel patches, each segment on its own."""

    def __init__(self, sampling_rate: int, n_fft: int, win_length: int, hop_length: int, num_mel_bins: int,
                 eps: float):
        self.n_fft, self.win_length, self.hop_length, self.eps = n_fft, win_length, hop_length, eps
        self.window = torch.hann_window(win_length, periodic=True)
        self.filters = htk_mel_filter_bank(n_fft // 2 + 1, num_mel_bins, sampling_rate)

    def __call__(self, segments: torch.Tensor) -> torch.Tensor:
        pieces = [self._chunk(segments[i : i + _SEGMENTS_PER_CHUNK])
                  for i in range(0, segments.shape[0], _SEGMENTS_PER_CHUNK)]
        if not pieces:
            frames = 1 + segments.shape[-1] // self.hop_length
            return segments.new_zeros(0, frames, self.filters.shape[0])
        return torch.cat(pieces)

    def _chunk(self, segments: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(
            segments.float(), self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
            window=self.window.to(segments.device), center=True, pad_mode="reflect", return_complex=True,
        )
        parts = torch.view_as_real(spectrum)
        # |X|^2 from the real and imaginary parts: complex abs() pays for a square root (hypot) first
        power = torch.addcmul(parts[..., 0] * parts[..., 0], parts[..., 1], parts[..., 1])
        mel = torch.matmul(self.filters.to(power.device), power)  # [segments, mels, frames]
        return torch.log(mel + self.eps).transpose(1, 2)
