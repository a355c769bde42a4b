"""Per-step log-mel features of one song that arrives in consecutive blocks, equal to those of the whole song.

Steps are independent: each 0.5 s of audio at the model's rate is transformed on its own (its centre padding
is its own), so only the resampler carries state across blocks (`ResamplerStream`: the filter's reach of
input). Memory holds one block, the resampler's overlap and less than one step of resampled audio, whatever
the song's length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .harmonic_dsaml import NUM_HARMONIC_FEATURES
from .resampling_dsaml import check_sampling_rate
from .step_audio_dsaml import mono_waveform

if TYPE_CHECKING:
    from .feature_extraction_dsaml import DSAMLFeatureExtractor

__all__ = ["StepFeatureStream"]


class StepFeatureStream:
    """`push(block)` returns the `[steps, frames, mels]` patches of the steps a block completes, `flush()` those
    of the last complete steps; concatenated, they equal `extractor.log_mel_patches(extractor.prepare_waveform(
    whole, rate))` up to float rounding. `push_inputs` / `flush_inputs` return every per-step model input the
    extractor makes (`input_features`, and `harmonic_features` `[steps, 38]` / `global_input_values` `[steps,
    samples_per_step]` when it returns them), what `StreamingPrediction.push` takes. Blocks are mono
    `[samples]` or channels-first `[channels, samples]` (averaged, as the feature extractor does). Only complete
    steps are kept; `flush` raises a ValueError naming the input if the song was silent or shorter than one step."""

    def __init__(self, extractor: DSAMLFeatureExtractor, sampling_rate: int, name: str = "audio"):
        rate = check_sampling_rate(sampling_rate, name)
        self.name = name
        self.extractor = extractor
        self.resampler = extractor.resampler(rate).stream()
        self.pending = torch.zeros(0)  # resampled samples of the step not yet complete
        self.steps = 0
        self.peak = 0.0

    def push(self, block) -> torch.Tensor:
        return self.extractor.log_mel_patches(self._push(block))

    def flush(self) -> torch.Tensor:
        return self.extractor.log_mel_patches(self._flush())

    def push_inputs(self, block) -> dict[str, torch.Tensor]:
        return self._inputs(self._push(block))

    def flush_inputs(self) -> dict[str, torch.Tensor]:
        return self._inputs(self._flush())

    def _inputs(self, samples: torch.Tensor) -> dict[str, torch.Tensor]:
        extractor = self.extractor
        inputs = {"input_features": extractor.log_mel_patches(samples)}
        if extractor.return_harmonic_features and samples.numel():
            inputs["harmonic_features"] = extractor.harmonic_patches(samples)
        elif extractor.return_harmonic_features:
            inputs["harmonic_features"] = torch.zeros(0, NUM_HARMONIC_FEATURES)
        if extractor.return_global_waveform:
            inputs["global_input_values"] = samples.view(-1, extractor.samples_per_step)
        return inputs

    def _push(self, block) -> torch.Tensor:
        wave = mono_waveform(block, self.name)
        if not torch.isfinite(wave).all():
            raise ValueError(f"{self.name}: audio contains NaN or infinite samples")
        if wave.numel():
            self.peak = max(self.peak, float(wave.abs().max()))
        return self._complete_steps(self.resampler.push(wave))

    def _flush(self) -> torch.Tensor:
        samples = self._complete_steps(self.resampler.flush())
        if self.peak < self.extractor.silence_threshold:
            raise ValueError(f"{self.name}: audio is silent (peak amplitude below {self.extractor.silence_threshold:g})")
        if self.steps == 0:
            raise ValueError(f"{self.name}: audio is shorter than one {self.extractor.step_seconds} s step")
        return samples

    def _complete_steps(self, samples: torch.Tensor) -> torch.Tensor:
        """The samples of the steps now complete (a whole number of steps)."""
        per_step = self.extractor.samples_per_step
        self.pending = torch.cat([self.pending, samples.reshape(-1)])
        count = self.pending.numel() // per_step
        complete = self.pending[: count * per_step]
        self.pending = self.pending[count * per_step :].clone()  # a view would pin the whole block
        self.steps += count
        return complete
