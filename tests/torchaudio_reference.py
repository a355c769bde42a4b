"""The reference code's front end, for parity checks (tests) and speed comparisons (benchmarks): torchaudio's
resampler, then its MelSpectrogram on each 0.5 s step at 44.1 kHz, then log(mel + 1e-6)."""

from __future__ import annotations

import numpy as np
import torch


def torchaudio_features(audio: np.ndarray, rate: int) -> torch.Tensor:
    """`[steps, 51, 128]` log-mel patches as the reference code computes them (needs torchaudio)."""
    import torchaudio

    wave = torch.from_numpy(audio)
    if rate != 44100:
        wave = torchaudio.functional.resample(wave, rate, 44100)
    mel = torchaudio.transforms.MelSpectrogram(44100, n_fft=2646, win_length=2646, hop_length=441, n_mels=128)
    steps = wave.numel() // 22050
    return torch.log(mel(wave[: steps * 22050].reshape(steps, 22050)) + 1e-6).transpose(1, 2)
