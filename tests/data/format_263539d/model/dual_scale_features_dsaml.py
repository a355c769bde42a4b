"""Dual-scale feature extractor: a local per-step CNN "adapter" and a global long-context encoder, fused.

Reference: `models/layer/spectrogram_feature_extractor.py` and `feature_fusion.py` of the official code,
z = Linear(sigmoid(Linear(cnn(x'_step)) + z_global)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_dsaml import DSAMLConfig
from .harmonic_dsaml import NUM_HARMONIC_FEATURES
from .resampling_dsaml import Resampler
from .step_audio_dsaml import context_windows


def _mask_steps(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero padded steps of a `[B, S, ...]` tensor so they never leak into valid ones."""
    if mask is None:
        return x
    return x * mask.view(*mask.shape, *([1] * (x.ndim - 2))).to(x.dtype)


class FixedStatisticsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that always normalizes with its stored statistics: never the batch's, never updating them.

    The reference code's BatchNorm normalizes each training batch with its own statistics. Under meta-learning a
    batch is one listener's task, mostly one song: its statistics remove the song's level (how loud, how bright
    it is, which arousal depends on), they differ from the running statistics used at prediction, and every
    inner-loop forward moved the running statistics in place, so they depended on the number of processes and
    on personalization. Here the statistics are set ONCE, from training audio before the first step
    (`LocalSpectrogramCNN.calibrate`), and then stay fixed: the layer is a per-channel affine map that training,
    personalization and prediction all use alike. Same parameters and state-dict keys as `nn.BatchNorm2d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class FixedStatisticsNorm(nn.BatchNorm1d):
    """Each feature of `[..., features]` standardized with stored statistics (set once by `calibrate`, then
    fixed), then a per-feature affine map: `FixedStatisticsBatchNorm2d` for the last axis of any tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = F.batch_norm(x.reshape(-1, x.shape[-1]), self.running_mean, self.running_var, self.weight, self.bias,
                            False, 0.0, self.eps)
        return flat.view_as(x)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Set the statistics to each feature's mean and variance over every row of `x` `[..., features]`."""
        flat = x.reshape(-1, x.shape[-1]).to(self.running_mean.dtype)
        self.running_mean.copy_(flat.mean(dim=0))
        self.running_var.copy_(flat.var(dim=0, unbiased=False))
        self.num_batches_tracked.fill_(1)


class LocalSpectrogramCNN(nn.Module):
    """The official local-scale CNN: each 0.5 s log-mel patch -> `local_feature_size` (476) values.

    Its normalizations keep fixed statistics (`FixedStatisticsBatchNorm2d`, set by `calibrate`); a stateless
    GroupNorm over each patch was also measured and made one-song personalization worse (README, method section).
    """

    def __init__(self, config: DSAMLConfig):
        super().__init__()
        c1, c2 = config.local_cnn_channels
        self.block1 = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=(3, 1), padding=(2, 1)),
            FixedStatisticsBatchNorm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2, padding=1),
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(c1, c2, kernel_size=3, padding=1),
            FixedStatisticsBatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2, padding=1),
        )
        self.to_single_channel = nn.Conv2d(c2, 1, kernel_size=1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """`[N, frames, mels]` -> `[N, local_feature_size]`."""
        x = self.block2(self.block1(patches.unsqueeze(1)))
        return self.to_single_channel(x).flatten(1)

    @torch.no_grad()
    def calibrate(self, patches: torch.Tensor) -> None:
        """Set each normalization's statistics to the per-channel mean and variance of its input over `patches`
        `[N, frames, mels]`, block by block (the second block sees the first one normalized)."""
        x = patches.unsqueeze(1).to(self.block1[0].weight.dtype)
        for block in (self.block1, self.block2):
            h = block[0](x)
            norm = block[1]
            norm.running_mean.copy_(h.mean(dim=(0, 2, 3)))
            norm.running_var.copy_(h.var(dim=(0, 2, 3), unbiased=False))
            norm.num_batches_tracked.fill_(1)
            x = block(x)


class TemporalContextCNN(nn.Module):
    """Default global scale: a trainable dilated CNN over per-step spectral summaries.

    The receptive field is 1 + (kernel - 1) * sum(dilations) steps (61 steps = 30.5 s by default), the same
    long context the paper takes from frozen ImageBind embeddings of 30 s windows, but trainable and offline.
    Its input normalization is `config.global_input_norm`: a LayerNorm per step, or fixed per-feature statistics
    (`FixedStatisticsNorm`, set by `DualScaleFeatureFusion.calibrate`).
    """

    def __init__(self, config: DSAMLConfig, input_size: int):
        super().__init__()
        channels = config.global_cnn_channels
        self.input_norm = (FixedStatisticsNorm(input_size) if config.global_input_norm == "fixed"
                           else nn.LayerNorm(input_size))
        self.input_proj = nn.Linear(input_size, channels)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, config.global_cnn_kernel_size, dilation=d,
                      padding=d * (config.global_cnn_kernel_size - 1) // 2)
            for d in config.global_cnn_dilations
        )
        self.output_proj = nn.Linear(channels, config.hidden_size)

    def forward(self, step_features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """`[B, S, input_size]` -> `[B, S, hidden]`."""
        x = _mask_steps(self.input_proj(self.input_norm(step_features)), mask).transpose(1, 2)
        conv_mask = None if mask is None else mask.unsqueeze(1).to(x.dtype)
        for conv in self.convs:
            x = x + F.gelu(conv(x))  # residual keeps the step's own content next to its context
            if conv_mask is not None:
                x = x * conv_mask
        return self.output_proj(x.transpose(1, 2))


class PretrainedContextEncoder(nn.Module):
    """Optional global scale: a FROZEN transformers audio encoder (wav2vec2, HuBERT, WavLM, data2vec-audio, ...)
    embedding a `global_context_seconds` window centred on every `global_encoder_stride_steps`-th step, as the
    paper does with ImageBind. Its weights are saved with the DSAML checkpoint, so loading needs no other repo."""

    def __init__(self, config: DSAMLConfig):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        encoder_config = dict(config.global_encoder_config)
        encoder_config = AutoConfig.for_model(encoder_config.pop("model_type"), **encoder_config)
        self.encoder = AutoModel.from_config(encoder_config)
        self.encoder.requires_grad_(False)
        self.projection = nn.Linear(encoder_config.hidden_size, config.hidden_size)
        self.sampling_rate = config.sampling_rate
        self.encoder_rate = config.global_encoder_sampling_rate
        self.step_seconds = config.step_seconds
        self.context_seconds = config.global_context_seconds
        self.stride = config.global_encoder_stride_steps
        self.resampler = None

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: dropout off and normalisation statistics fixed, also during training
        return self

    @torch.no_grad()
    def embed(self, waveform: torch.Tensor, num_steps: int) -> torch.Tensor:
        """`[B, samples]` at the model rate -> `[B, num_steps, encoder_hidden]`."""
        if self.resampler is None:  # built on first use: its filter table is not model state
            self.resampler = Resampler(self.sampling_rate, self.encoder_rate)
        wave = self.resampler(waveform.float())
        context = int(round(self.context_seconds * self.encoder_rate))
        windows = context_windows(wave, num_steps, self.stride, self.step_seconds * self.encoder_rate, context)
        flat = windows.flatten(0, 1)
        flat = (flat - flat.mean(-1, keepdim=True)) / torch.sqrt(flat.var(-1, keepdim=True) + 1e-7)
        hidden = self.encoder(input_values=flat.to(next(self.encoder.parameters()).dtype)).last_hidden_state
        embeddings = hidden.mean(dim=1).view(wave.shape[0], windows.shape[1], -1)
        return embeddings.repeat_interleave(self.stride, dim=1)[:, :num_steps]

    def forward(self, waveform: torch.Tensor, num_steps: int) -> torch.Tensor:
        return self.projection(self.embed(waveform, num_steps).to(self.projection.weight.dtype))


class DualScaleFeatureFusion(nn.Module):
    """Local (per-step) and global (long-context) features, fused: z = fuse(sigmoid(local + global [+ harmonic])).

    With `config.harmonic_features`, each step's harmonic view (`harmonic_dsaml.py`) is projected into the
    fused sum and also joins the spectral summary the temporal CNN reads (the key of a passage is context)."""

    def __init__(self, config: DSAMLConfig):
        super().__init__()
        self.config = config
        if config.input_type == "log_mel":
            self.local_cnn = LocalSpectrogramCNN(config)
            local_size = config.local_feature_size
            summary_size = 2 * config.num_mel_bins  # per-step mean and std of each mel band
        else:
            self.local_cnn = None
            local_size = summary_size = config.frame_feature_size
        self.local_projection = nn.Linear(local_size, config.hidden_size)
        self.harmonic_projection = None
        if config.harmonic_features:
            self.harmonic_projection = nn.Linear(NUM_HARMONIC_FEATURES, config.hidden_size)
            summary_size += NUM_HARMONIC_FEATURES
        if config.global_encoder == "temporal_cnn":
            self.global_encoder = TemporalContextCNN(config, summary_size)
        elif config.global_encoder == "pretrained":
            self.global_encoder = PretrainedContextEncoder(config)
        else:
            self.global_encoder = None
        self.fusion_projection = nn.Linear(config.hidden_size, config.hidden_size)

    def local_features(self, input_features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.local_cnn is None:
            return self.local_projection(input_features)
        batch, steps = input_features.shape[:2]
        if mask is None:
            flat = self.local_cnn(input_features.flatten(0, 1))
            return self.local_projection(flat.view(batch, steps, -1))
        # run the CNN on real steps only: padding must not enter BatchNorm statistics
        valid = mask.bool()
        out = input_features.new_zeros(batch, steps, self.local_projection.in_features)
        out[valid] = self.local_cnn(input_features[valid])
        return self.local_projection(out)

    def check_harmonic(self, harmonic_features: torch.Tensor | None) -> None:
        if (harmonic_features is None) != (self.harmonic_projection is None):
            raise ValueError("this model was configured with harmonic_features="
                             f"{self.harmonic_projection is not None}: pass `harmonic_features` exactly when it is "
                             "True (the feature extractor returns them for such a model)")

    def spectral_summary(self, input_features: torch.Tensor) -> torch.Tensor | None:
        """`[..., steps, size]`: what the temporal CNN reads of each step's own patch (each mel band's mean and
        std over the step's frames; frame features as they are); None when the global encoder is not the
        temporal CNN."""
        if not isinstance(self.global_encoder, TemporalContextCNN):
            return None
        if self.local_cnn is None:
            return input_features
        return torch.cat([input_features.mean(dim=-2), input_features.std(dim=-2)], dim=-1)

    @staticmethod
    def step_summary(summary: torch.Tensor, harmonic_features: torch.Tensor | None) -> torch.Tensor:
        """The temporal CNN's whole per-step input: the spectral summary, then the harmonic view when the model
        has one."""
        if harmonic_features is not None:
            summary = torch.cat([summary, harmonic_features.to(summary.dtype)], dim=-1)
        return summary

    def global_features(
        self, summary: torch.Tensor | None, mask: torch.Tensor | None, global_input_values: torch.Tensor | None,
        harmonic_features: torch.Tensor | None, num_steps: int,
    ) -> torch.Tensor | None:
        if self.global_encoder is None:
            return None
        if isinstance(self.global_encoder, PretrainedContextEncoder):
            if global_input_values is None:
                raise ValueError(
                    "this model's global encoder is a pretrained audio encoder: pass `global_input_values` "
                    "(the feature extractor returns them when return_global_waveform=True)"
                )
            return self.global_encoder(global_input_values, num_steps)
        return self.global_encoder(self.step_summary(summary, harmonic_features), mask)

    @torch.no_grad()
    def calibrate(self, input_features: torch.Tensor, harmonic_features: torch.Tensor | None = None) -> None:
        """Set every fixed normalization statistic from training steps `[N, ...]` (each step's input features
        and, for a model with the harmonic view, its `[N, 38]` harmonic view): the local CNN's
        (`LocalSpectrogramCNN.calibrate`) and, with `global_input_norm="fixed"`, the temporal CNN's input's."""
        if self.local_cnn is not None:
            self.local_cnn.calibrate(input_features)
        norm = getattr(self.global_encoder, "input_norm", None)
        if isinstance(norm, FixedStatisticsNorm):
            if (harmonic_features is None) != (self.harmonic_projection is None):
                raise ValueError("calibrate: pass the harmonic view exactly when the model reads it")
            summary = self.spectral_summary(input_features.to(norm.running_mean.dtype))
            norm.calibrate(self.step_summary(summary, harmonic_features))

    def step_features(self, input_features: torch.Tensor,
                      mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(local [B, S, hidden], spectral summary [B, S, summary] or None)`: what each step contributes from
        its own patch, the same in every window that contains it (streaming prediction computes it once per
        step, `sliding_windows_dsaml`)."""
        return self.local_features(input_features, mask), self.spectral_summary(input_features)

    def fuse(
        self,
        local: torch.Tensor,
        summary: torch.Tensor | None,
        mask: torch.Tensor | None = None,
        global_input_values: torch.Tensor | None = None,
        harmonic_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The fused sequence from the per-step parts (`step_features`) and the window's context."""
        self.check_harmonic(harmonic_features)
        z = local
        z_global = self.global_features(summary, mask, global_input_values, harmonic_features, local.shape[1])
        if z_global is not None:
            z = z + z_global
        if harmonic_features is not None:
            z = z + self.harmonic_projection(harmonic_features.to(z.dtype))
        return _mask_steps(self.fusion_projection(torch.sigmoid(z)), mask)

    def forward(
        self,
        input_features: torch.Tensor,
        mask: torch.Tensor | None = None,
        global_input_values: torch.Tensor | None = None,
        harmonic_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self.check_harmonic(harmonic_features)  # before the local CNN's work
        local, summary = self.step_features(input_features, mask)
        return self.fuse(local, summary, mask, global_input_values, harmonic_features)
