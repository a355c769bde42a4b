"""The harmonic view of each 0.5 s step: its chroma and how well it matches major and minor triads.

The log-mel patches cannot resolve a semitone below a few kHz (128 mel bands over 22 kHz), so they barely show
whether a chord is major or minor, the strongest cue of musical valence. A chroma vector from the step's own
STFT (n_fft = 2646 at 44.1 kHz: 16.7 Hz bins) resolves it. Per step this returns 38 values:

- the step's chroma (12 pitch classes, each frame normalised to sum 1, then averaged over the step's frames);
- its cosine similarity with the 12 major and the 12 minor triad templates (classic template chord
  recognition), which depend on the key;
- the best major and the best minor similarity (maxima over the 12 roots): the chord's quality whatever its
  key, which a linear layer reads as their difference. It has to be given: a linear read-out of the 36 values
  above cannot take a maximum, and on the synthetic songs it predicts the mode at r = -0.12 where the
  difference of the two maxima reaches r = 0.92 (songs in every key).

Only torch and transformers are used (this file travels with the model as remote code).
"""

from __future__ import annotations

import torch
from transformers.audio_utils import chroma_filter_bank

NUM_HARMONIC_FEATURES = 38
NUM_READOUT_CUES = 2  # the best major and best minor similarity: the last two values
_MAJOR, _MINOR = (0, 4, 7), (0, 3, 7)


def triad_templates() -> torch.Tensor:
    """`[24, 12]` zero-mean, unit-norm triad templates: 12 major (roots C..B), then 12 minor."""
    rows = []
    for triad in (_MAJOR, _MINOR):
        for root in range(12):
            t = torch.zeros(12)
            t[[(root + i) % 12 for i in triad]] = 1.0
            rows.append(t)
    templates = torch.stack(rows)
    templates = templates - templates.mean(dim=1, keepdim=True)
    return templates / templates.norm(dim=1, keepdim=True)


class HarmonicView:
    """Per-step harmonic features of step segments `[steps, samples_per_step]` at `sampling_rate`."""

    def __init__(self, sampling_rate: int, n_fft: int, hop_length: int):
        self.n_fft, self.hop_length = n_fft, hop_length
        bank = chroma_filter_bank(num_frequency_bins=n_fft, num_chroma=12, sampling_rate=sampling_rate)
        self.filters = torch.as_tensor(bank, dtype=torch.float32)  # [12, n_fft // 2 + 1]
        self.window = torch.hann_window(n_fft)
        self.templates = triad_templates()

    def __call__(self, segments: torch.Tensor) -> torch.Tensor:
        """`[steps, samples]` -> `[steps, 38]`: chroma, major and minor template similarities, their maxima."""
        spectrum = torch.stft(segments.float(), self.n_fft, self.hop_length, window=self.window, center=True,
                              return_complex=True).abs().pow(2)  # [steps, bins, frames]
        chroma = torch.einsum("cb,sbf->sfc", self.filters, spectrum)
        chroma = (chroma / chroma.sum(dim=-1, keepdim=True).clamp_min(1e-10)).mean(dim=1)  # [steps, 12]
        centred = chroma - chroma.mean(dim=1, keepdim=True)
        unit = centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-8)
        similarity = unit @ self.templates.T  # [steps, 24]: 12 major, then 12 minor
        best = torch.stack([similarity[:, :12].amax(dim=1), similarity[:, 12:].amax(dim=1)], dim=1)
        return torch.cat([chroma, similarity, best], dim=1)


def readout_cues(harmonic: torch.Tensor) -> torch.Tensor:
    """`[..., 38]` harmonic views -> `[..., 2]`: the chord-quality evidence the output layer reads directly
    (`DSAMLConfig.readout_cues`)."""
    return harmonic[..., NUM_HARMONIC_FEATURES - NUM_READOUT_CUES:]


__all__ = ["HarmonicView", "NUM_HARMONIC_FEATURES", "NUM_READOUT_CUES", "readout_cues", "triad_templates"]
