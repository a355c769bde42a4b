"""Waveforms -> per-step log-mel patches (the DSAML input preprocessor).

Each 0.5 s step of audio at 44.1 kHz is turned into its own log-mel spectrogram (n_fft = win = 2646, hop 441,
128 mels, centred frames) -> 51 x 128, as the reference code computes it segment by segment with torchaudio.
Resampling and the log-mel are computed here with torch alone (`resampling_dsaml`, `log_mel_dsaml`), so the
remote code runs where torchaudio is not installed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor

from .harmonic_dsaml import NUM_HARMONIC_FEATURES, HarmonicView
from .log_mel_dsaml import LogMelSpectrogram
from .resampling_dsaml import Resampler, check_sampling_rate
from .step_audio_dsaml import mono_waveform, step_samples
from .streaming_features_dsaml import StepFeatureStream


class DSAMLFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns raw mono waveforms (any sample rate from 1 kHz to 768 kHz: they are resampled) into

    - `input_features`: `[batch, steps, frames_per_step, num_mel_bins]` log-mel patches, one per `step_seconds`;
    - `attention_mask`: `[batch, steps]`, 1 for real steps, 0 for padding (songs of different lengths);
    - `harmonic_features` (only with `return_harmonic_features=True`): `[batch, steps, 38]` per-step chroma and
      triad evidence (`harmonic_dsaml.py`);
    - `global_input_values` (only with `return_global_waveform=True`, for a frozen pretrained global encoder):
      `[batch, steps * samples_per_step]` waveforms at `sampling_rate`.

    Only complete steps are kept: a song of 30.3 s gives 60 steps. Audio shorter than one step, empty, non-finite
    or entirely silent raises a `ValueError` naming the offending input.
    """

    model_input_names = ["input_features", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 128,
        sampling_rate: int = 44100,
        padding_value: float = 0.0,
        step_seconds: float = 0.5,
        n_fft: int = 2646,
        win_length: int = 2646,
        hop_length: int = 441,
        log_mel_eps: float = 1e-6,
        silence_threshold: float = 1e-5,
        return_global_waveform: bool = False,
        return_harmonic_features: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("return_attention_mask", True)
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.step_seconds = step_seconds
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.log_mel_eps = log_mel_eps
        self.silence_threshold = silence_threshold
        self.return_global_waveform = return_global_waveform
        self.return_harmonic_features = return_harmonic_features
        self._harmonic = None  # built lazily, like the log-mel filters
        # built lazily and kept out of the saved config: filter tables, not settings
        self._log_mel: LogMelSpectrogram | None = None
        self._resamplers: dict[int, Resampler] = {}

    @classmethod
    def from_model_config(cls, config, **kwargs) -> DSAMLFeatureExtractor:
        """The feature extractor matching a `DSAMLConfig`."""
        return cls(
            feature_size=config.num_mel_bins,
            sampling_rate=config.sampling_rate,
            step_seconds=config.step_seconds,
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            log_mel_eps=config.log_mel_eps,
            return_global_waveform=config.global_encoder == "pretrained",
            return_harmonic_features=config.harmonic_features,
            **kwargs,
        )

    @property
    def samples_per_step(self) -> int:
        return int(round(self.sampling_rate * self.step_seconds))

    def to_dict(self):
        output = super().to_dict()
        output.pop("_log_mel", None)
        output.pop("_resamplers", None)
        output.pop("_harmonic", None)
        return output

    def _log_mel_transform(self) -> LogMelSpectrogram:
        if self._log_mel is None:
            self._log_mel = LogMelSpectrogram(self.sampling_rate, self.n_fft, self.win_length, self.hop_length,
                                              self.feature_size, self.log_mel_eps)
        return self._log_mel

    def resampler(self, sampling_rate: int) -> Resampler:
        """The resampler from `sampling_rate` to the model's rate (cached per input rate)."""
        if sampling_rate not in self._resamplers:
            self._resamplers[sampling_rate] = Resampler(sampling_rate, self.sampling_rate)
        return self._resamplers[sampling_rate]

    def prepare_waveform(self, audio, sampling_rate: int, name: str = "audio") -> torch.Tensor:
        """Validate one input and return it as a mono float32 tensor at `self.sampling_rate`."""
        sampling_rate = check_sampling_rate(sampling_rate, name)
        waveform = mono_waveform(audio, name)
        if waveform.numel() == 0:
            raise ValueError(f"{name}: audio is empty (0 samples)")
        if not torch.isfinite(waveform).all():
            raise ValueError(f"{name}: audio contains NaN or infinite samples")
        if waveform.abs().max() < self.silence_threshold:
            raise ValueError(f"{name}: audio is silent (peak amplitude below {self.silence_threshold:g})")
        if sampling_rate != self.sampling_rate:
            waveform = self.resampler(sampling_rate)(waveform)
        if waveform.numel() < self.samples_per_step:
            seconds = waveform.numel() / self.sampling_rate
            raise ValueError(f"{name}: audio lasts {seconds:.3f} s, shorter than one {self.step_seconds} s step")
        return waveform

    def log_mel_patches(self, waveform: torch.Tensor) -> torch.Tensor:
        """`[samples]` at `self.sampling_rate` -> `[steps, frames_per_step, n_mels]` (each step on its own)."""
        steps = waveform.numel() // self.samples_per_step
        segments = waveform[: steps * self.samples_per_step].reshape(steps, self.samples_per_step)
        return self._log_mel_transform()(segments)

    def harmonic_patches(self, waveform: torch.Tensor) -> torch.Tensor:
        """`[samples]` at `self.sampling_rate` -> `[steps, 38]`: each step's harmonic view (`harmonic_dsaml.py`)."""
        if self._harmonic is None:
            self._harmonic = HarmonicView(self.sampling_rate, self.n_fft, self.hop_length)
        steps = waveform.numel() // self.samples_per_step
        return self._harmonic(waveform[: steps * self.samples_per_step].reshape(steps, self.samples_per_step))

    def __call__(
        self,
        raw_audio: np.ndarray | torch.Tensor | Sequence,
        sampling_rate: int | None = None,
        return_tensors: str | None = "pt",
        max_steps: int | None = None,
        names: Sequence[str] | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            raw_audio: one waveform (1-D, or 2-D channels-first) or a list of them.
            sampling_rate: sample rate of `raw_audio` (required: a wrong rate silently corrupts every feature).
            return_tensors: "pt" (default) or "np".
            max_steps: truncate every song to at most this many steps.
            names: labels for the inputs (file names, song ids) used in error messages.
        """
        if sampling_rate is None:
            raise ValueError(
                f"DSAMLFeatureExtractor needs sampling_rate= (expected audio at any rate; it is resampled to "
                f"{self.sampling_rate} Hz)"
            )
        sampling_rate = check_sampling_rate(sampling_rate, "sampling_rate")
        single = isinstance(raw_audio, (np.ndarray, torch.Tensor)) and np.ndim(raw_audio) == 1
        batch = [raw_audio] if single else list(raw_audio)
        if len(batch) == 0:
            raise ValueError("DSAMLFeatureExtractor got an empty batch")
        names = list(names) if names is not None else [f"input {i}" for i in range(len(batch))]
        if len(names) != len(batch):
            raise ValueError(f"got {len(names)} names for {len(batch)} inputs")

        waveforms = [self.prepare_waveform(audio, sampling_rate, name) for audio, name in zip(batch, names)]
        patches = [self.log_mel_patches(w) for w in waveforms]
        if max_steps is not None:
            patches = [p[:max_steps] for p in patches]
        lengths = [p.shape[0] for p in patches]
        longest = max(lengths)
        features = torch.full((len(patches), longest, *patches[0].shape[1:]), float(self.padding_value))
        mask = torch.zeros(len(patches), longest, dtype=torch.long)
        for i, p in enumerate(patches):
            features[i, : p.shape[0]] = p
            mask[i, : p.shape[0]] = 1
        data = {"input_features": features, "attention_mask": mask}
        if self.return_global_waveform:
            samples = longest * self.samples_per_step
            wave = torch.zeros(len(waveforms), samples)
            for i, (w, n) in enumerate(zip(waveforms, lengths)):
                wave[i, : n * self.samples_per_step] = step_samples(w, 0, n, self.samples_per_step)
            data["global_input_values"] = wave
        if self.return_harmonic_features:
            harmonic = torch.zeros(len(waveforms), longest, NUM_HARMONIC_FEATURES)
            for i, (w, n) in enumerate(zip(waveforms, lengths)):
                harmonic[i, :n] = self.harmonic_patches(w)[:n]
            data["harmonic_features"] = harmonic
        if return_tensors == "np":
            data = {k: v.numpy() for k, v in data.items()}
        elif return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        return BatchFeature(data=data, tensor_type=None)

    def num_steps(self, num_samples: int, sampling_rate: int) -> int:
        """Steps a waveform of `num_samples` at `sampling_rate` yields (after resampling)."""
        return self.resampler(int(sampling_rate)).output_length(num_samples) // self.samples_per_step

    def stream(self, sampling_rate: int, name: str = "audio") -> StepFeatureStream:
        """Features of one song fed in consecutive blocks (see `StepFeatureStream`)."""
        return StepFeatureStream(self, sampling_rate, name)


__all__ = ["DSAMLFeatureExtractor"]

DSAMLFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
