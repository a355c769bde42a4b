"""Which waveform samples belong to which step: the one definition of the step-to-sample slicing.

A model with a pretrained global encoder takes `global_input_values`: the song's waveform at the model's
`sampling_rate` (44.1 kHz), `samples_per_step` samples per step, the same steps as `input_features`. The
feature extractor, the windows of `predict_long`, training's song store and personalization all cut it here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["context_windows", "mono_waveform", "step_samples"]

# more "channels" than this in a 2-D array's first axis means (samples, channels), e.g. soundfile's layout
MAX_CHANNELS = 8


def mono_waveform(audio, name: str = "audio") -> torch.Tensor:
    """Mono `[samples]` (1-D) or channels-first `[channels, samples]` audio as a 1-D float32 tensor, the
    channels averaged; a ValueError naming `name` for any other shape."""
    import numpy as np

    waveform = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    if waveform.ndim == 2:
        if waveform.shape[0] > MAX_CHANNELS:
            raise ValueError(
                f"{name}: 2-D audio must be (channels, samples); got shape {tuple(waveform.shape)}. "
                "Transpose (samples, channels) arrays, e.g. soundfile's output, first."
            )
        waveform = waveform.mean(dim=0)
    if waveform.ndim != 1:
        raise ValueError(f"{name}: expected mono (samples,) or (channels, samples) audio, got shape "
                         f"{tuple(waveform.shape)}")
    return waveform


def step_samples(waveform: torch.Tensor, start: int, stop: int, samples_per_step: int) -> torch.Tensor:
    """The samples of steps `[start, stop)` along the last axis, zero-padded where the waveform ends first."""
    first, last = start * samples_per_step, stop * samples_per_step
    piece = waveform[..., first:last]
    return F.pad(piece, (0, last - first - piece.shape[-1])) if piece.shape[-1] < last - first else piece


def context_windows(waveform: torch.Tensor, num_steps: int, stride: int, step_samples_count: float,
                    context: int) -> torch.Tensor:
    """`[B, samples]` -> `[B, W, context]`: a `context`-sample window centred on the middle of every
    `stride`-th of `num_steps` steps (steps of `step_samples_count` samples at the waveform's rate), zeros
    beyond the song's ends."""
    half = context // 2
    padded = F.pad(waveform, (half, context - half))
    centres = torch.arange(0, num_steps, stride)
    starts = ((centres.double() + 0.5) * step_samples_count).long().tolist()  # centre index in the unpadded wave
    return torch.stack([padded[:, s : s + context] for s in starts], dim=1)
