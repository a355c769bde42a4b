"""DSAML: Dual-Scale Attention-Based Meta-Learning for personalized dynamic music emotion recognition.

Pipeline (paper Fig. 2): per-step log-mel patches -> dual-scale feature fusion (`DualScaleFeatureFusion`, the
paper's "dual-scale feature extractor") -> dual-scale attention transformer (one shared encoder, local and global
band masks) -> BiLSTM sequence predictor -> (arousal, valence) at 2 Hz. Meta-learning lives in the `dsaml` library; this file only defines the network and its losses, so it
can travel to the Hub as remote code (torch / transformers imports only, relative imports between files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_dsaml import LABEL_NAMES, DSAMLConfig
from .dual_scale_attention_dsaml import DualScaleAttentionTransformer
from .harmonic_dsaml import NUM_HARMONIC_FEATURES, NUM_READOUT_CUES, readout_cues
from .dual_scale_features_dsaml import DualScaleFeatureFusion
from .losses_dsaml import diagonal_attention_loss, emotion_loss
from .sliding_windows_dsaml import StreamingPrediction, window_starts
from .step_audio_dsaml import step_samples


@dataclass
class DSAMLModelOutput(ModelOutput):
    """
    last_hidden_state (`[B, S, hidden]`): the dual-scale attention output sigmoid(local + global).
    fused_features (`[B, S, hidden]`): the `DualScaleFeatureFusion` output (transformer input).
    attentions (tuple of `[B, heads, S, S]`): local-pass layers first, then global-pass layers
        (returned with `output_attentions=True`).
    """

    last_hidden_state: torch.FloatTensor | None = None
    fused_features: torch.FloatTensor | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class DSAMLEmotionOutput(ModelOutput):
    """
    loss (scalar, with `labels`): emotion loss + diagonal_loss_weight * diagonal attention loss.
    logits (`[B, S, 2]`): per-step predictions, channel 0 = arousal, channel 1 = valence.
    arousal, valence (`[B, S]`): the two channels of `logits`.
    emotion_loss, diagonal_loss (scalars, with `labels`): the two parts of `loss`.
    attentions: as in `DSAMLModelOutput`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    arousal: torch.FloatTensor | None = None
    valence: torch.FloatTensor | None = None
    emotion_loss: torch.FloatTensor | None = None
    diagonal_loss: torch.FloatTensor | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class DSAMLPreTrainedModel(PreTrainedModel):
    config_class = DSAMLConfig
    config: DSAMLConfig
    base_model_prefix = "dsaml"
    main_input_name = "input_features"
    supports_gradient_checkpointing = False
    _no_split_modules = ["DSAMLEncoderLayer"]
    # A checkpoint saved before the output delay existed has no `predictor.delay.steps`: no delay.
    _keys_to_ignore_on_load_missing = [r"predictor\.delay\.steps"]

    def _init_weights(self, module: nn.Module) -> None:
        # Everything but the delay keeps transformers' own init (the frozen global encoder, a PreTrainedModel inside
        # PretrainedContextEncoder, has its own; its pretrained weights are loaded after construction).
        if isinstance(module, OutputDelay):
            module.steps.zero_()
        else:
            super()._init_weights(module)

    def _check_inputs(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None,
                      harmonic_features: torch.Tensor | None = None) -> None:
        cfg = self.config
        expected = (
            f"[batch, steps, {cfg.frames_per_step}, {cfg.num_mel_bins}]"
            if cfg.input_type == "log_mel"
            else f"[batch, steps, {cfg.frame_feature_size}]"
        )
        rank = 4 if cfg.input_type == "log_mel" else 3
        if input_features.ndim != rank:
            raise ValueError(f"input_features must be {expected}, got shape {tuple(input_features.shape)}")
        if tuple(input_features.shape[2:]) != tuple(int(x) for x in expected.strip("[]").split(", ")[2:]):
            raise ValueError(f"input_features must be {expected}, got shape {tuple(input_features.shape)}")
        if input_features.shape[1] == 0:
            raise ValueError("input_features has 0 steps")
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_features.shape[:2]):
            raise ValueError(
                f"attention_mask must be [batch, steps] = {tuple(input_features.shape[:2])}, got {tuple(attention_mask.shape)}"
            )
        if not torch.isfinite(input_features).all():
            raise ValueError("input_features contain NaN or infinite values")
        if harmonic_features is not None and tuple(harmonic_features.shape) != (
            *input_features.shape[:2], NUM_HARMONIC_FEATURES
        ):
            raise ValueError(f"harmonic_features must be [batch, steps, {NUM_HARMONIC_FEATURES}] = "
                             f"{(*input_features.shape[:2], NUM_HARMONIC_FEATURES)}, got {tuple(harmonic_features.shape)}")


class DSAMLModel(DSAMLPreTrainedModel):
    """Dual-scale feature extractor + dual-scale attention transformer: features -> fused sequence."""

    def __init__(self, config: DSAMLConfig):
        super().__init__(config)
        self.features = DualScaleFeatureFusion(config)
        self.transformer = DualScaleAttentionTransformer(config)
        self.post_init()

    def encode(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        global_input_values: torch.Tensor | None = None,
        harmonic_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """(last hidden state, fused features, local attention maps, global attention maps)."""
        self._check_inputs(input_features, attention_mask, harmonic_features)
        fused = self.features(input_features, attention_mask, global_input_values, harmonic_features)
        return self._attend(fused, attention_mask)

    def encode_fused(self, local: torch.Tensor, summary: torch.Tensor | None = None,
                     global_input_values: torch.Tensor | None = None,
                     harmonic_features: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden state of unpadded windows from their steps' own parts (`features.step_features`):
        what `encode` computes after the local CNN."""
        fused = self.features.fuse(local, summary, None, global_input_values, harmonic_features)
        return self._attend(fused, None)[0]

    def _attend(self, fused: torch.Tensor, attention_mask: torch.Tensor | None):
        hidden, local_maps, global_maps = self.transformer(fused, attention_mask)
        if attention_mask is not None:
            hidden = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)
        return hidden, fused, local_maps, global_maps

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        global_input_values: torch.Tensor | None = None,
        harmonic_features: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DSAMLModelOutput | tuple:
        hidden, fused, local_maps, global_maps = self.encode(input_features, attention_mask, global_input_values,
                                                             harmonic_features)
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output = DSAMLModelOutput(
            last_hidden_state=hidden,
            fused_features=fused,
            attentions=tuple(local_maps + global_maps) if output_attentions else None,
        )
        return output if return_dict is not False else output.to_tuple()


class RidgeSettings(nn.Module):
    """The ridge inner loop's settings as meta-parameters (`config.learn_adaptation_ridge`), one per dimension
    (arousal, valence): its pull toward the meta-learned output layer, on a log scale, and the share of the
    support song's mean residual that moves the curve's level, on a logit scale."""

    def __init__(self, config: DSAMLConfig):
        super().__init__()
        dims = len(LABEL_NAMES)
        strength = max(float(config.adaptation_ridge), 1e-4)
        share = min(max(float(config.adaptation_level_share), 0.01), 0.99)  # a finite logit
        self.log_strength = nn.Parameter(torch.full((dims,), math.log(strength)))
        self.level_logit = nn.Parameter(torch.full((dims,), math.log(share / (1 - share))))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(strength, level share), each `[2]`."""
        return self.log_strength.exp(), torch.sigmoid(self.level_logit)


class OutputDelay(nn.Module):
    """A listener's reaction lag: each dimension's curve delayed by `steps[d]` steps within the window, its first
    steps holding the window's first prediction. Zero (no delay) in a trained model; personalization's ridge
    refit sets it (`config.adaptation_max_delay`). A buffer, so it is saved with the weights and a LoRA adapter
    carries it (PEFT `modules_to_save`)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("steps", torch.zeros(len(LABEL_NAMES), dtype=torch.long))

    def forward(self, logits: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        steps = self.steps if steps is None else steps
        if not bool(steps.any()):
            return logits
        index = (torch.arange(logits.shape[1], device=logits.device)[:, None] - steps.to(logits.device)).clamp_min(0)
        return logits.gather(1, index.expand(logits.shape[0], -1, -1))


class EmotionPredictor(nn.Module):
    """BiLSTM(lstm_hidden per direction) -> Linear -> Dropout -> Linear(2); linear output, as in the reference.
    With `config.readout_cues` the output layer also reads each step's chord-quality cues (its last inputs)."""

    def __init__(self, config: DSAMLConfig):
        super().__init__()
        self.lstm = nn.LSTM(config.hidden_size, config.lstm_hidden_size, batch_first=True, bidirectional=True)
        self.dense = nn.Linear(2 * config.lstm_hidden_size, config.predictor_hidden_size)
        self.dropout = nn.Dropout(config.predictor_dropout)
        self.reads_cues = bool(config.readout_cues)
        cues = NUM_READOUT_CUES if self.reads_cues else 0
        self.out = nn.Linear(config.predictor_hidden_size + cues, len(LABEL_NAMES))
        self.ridge = RidgeSettings(config) if config.learn_adaptation_ridge else None
        self.delay = OutputDelay()

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
                harmonic_features: torch.Tensor | None = None) -> torch.Tensor:
        return self.delay(self.out(self.readout_features(hidden, attention_mask, harmonic_features)))

    def readout_features(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
                         harmonic_features: torch.Tensor | None = None) -> torch.Tensor:
        """`[B, S, predictor_hidden_size (+ 2 cues)]`: what the output layer reads (the ridge inner loop refits
        it on them)."""
        features = self._hidden_readout(hidden, attention_mask)
        if not self.reads_cues:
            return features
        if harmonic_features is None:
            raise ValueError("this model's output layer reads chord-quality cues: pass `harmonic_features`")
        return torch.cat([features, readout_cues(harmonic_features).to(features.dtype)], dim=-1)

    def _hidden_readout(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is not None and not bool(attention_mask.all()):
            # pack so the backward direction starts at each song's real last step, not at its padding
            lengths = attention_mask.sum(dim=1).clamp_min(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(hidden, lengths, batch_first=True, enforce_sorted=False)
            sequence, _ = self.lstm(packed)
            sequence, _ = nn.utils.rnn.pad_packed_sequence(sequence, batch_first=True, total_length=hidden.shape[1])
        else:
            sequence, _ = self.lstm(hidden)
        return self.dropout(self.dense(sequence))


class DSAMLForDynamicEmotionRecognition(DSAMLPreTrainedModel):
    """DSAML with its BiLSTM predictor: per-step arousal and valence, losses, and long-song inference."""

    def __init__(self, config: DSAMLConfig):
        super().__init__(config)
        self.dsaml = DSAMLModel(config)
        self.predictor = EmotionPredictor(config)
        self.post_init()

    @classmethod
    def from_global_encoder_pretrained(cls, encoder_name_or_path: str, **config_kwargs):
        """Build DSAML around a frozen pretrained transformers audio encoder (wav2vec2, HuBERT, WavLM, ...).

        The encoder's weights are copied into the model and saved with it, so the result loads on its own."""
        from transformers import AutoFeatureExtractor, AutoModel

        encoder = AutoModel.from_pretrained(encoder_name_or_path)
        try:
            rate = AutoFeatureExtractor.from_pretrained(encoder_name_or_path).sampling_rate
        except (OSError, ValueError):
            rate = config_kwargs.pop("global_encoder_sampling_rate", 16000)
        config_kwargs.setdefault("global_encoder_sampling_rate", rate)
        config = DSAMLConfig(global_encoder="pretrained", global_encoder_config=encoder.config.to_dict(), **config_kwargs)
        model = cls(config)
        model.dsaml.features.global_encoder.encoder.load_state_dict(encoder.state_dict())
        return model

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        global_input_values: torch.Tensor | None = None,
        harmonic_features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        labels_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DSAMLEmotionOutput | tuple:
        r"""
        labels (`[B, S, 2]`, optional): per-step (arousal, valence) targets; steps where `attention_mask` is 0
            are ignored.
        labels_mask (`[B, S]`, optional): 0 on further steps the loss ignores (e.g. steps without a label).
        kwargs: accepted and ignored, as transformers models do for the generic arguments callers pass.
        """
        hidden, _, local_maps, global_maps = self.dsaml.encode(input_features, attention_mask, global_input_values,
                                                               harmonic_features)
        logits = self.predictor(hidden, attention_mask, harmonic_features)
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        loss = emotion_part = diagonal_part = None
        if labels is not None:
            emotion_part, mask = self.label_loss(logits, labels, attention_mask, labels_mask)
            loss = emotion_part
            if self.config.diagonal_loss_weight > 0:
                diagonal_part = diagonal_attention_loss(
                    local_maps[-1] if local_maps else None,
                    global_maps[-1] if global_maps else None,
                    mask,
                    self.config.local_diagonal_target,
                    self.config.global_diagonal_target,
                )
                loss = loss + self.config.diagonal_loss_weight * diagonal_part
        output = DSAMLEmotionOutput(
            loss=loss,
            logits=logits,
            arousal=logits[..., 0],
            valence=logits[..., 1],
            emotion_loss=emotion_part,
            diagonal_loss=diagonal_part,
            attentions=tuple(local_maps + global_maps) if output_attentions else None,
        )
        return output if return_dict is not False else output.to_tuple()

    def label_loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The emotion part of the loss (config.loss_type) on the steps both masks keep, and that mask.

        The only part of the loss that depends on the predictor: an inner loop adapting the predictor alone
        can run the encoder once and step on this."""
        if labels.shape != logits.shape:
            raise ValueError(f"labels must be [batch, steps, 2] = {tuple(logits.shape)}, got {tuple(labels.shape)}")
        if not torch.isfinite(labels).all():
            raise ValueError("labels contain NaN or infinite values; mask missing steps with labels_mask instead")
        mask = attention_mask
        if labels_mask is not None:
            mask = labels_mask if mask is None else mask * labels_mask
        return emotion_loss(logits, labels.to(logits.dtype), mask, self.config.loss_type), mask

    @torch.no_grad()
    def encode_steps(self, input_features: torch.Tensor, harmonic_features: torch.Tensor | None = None,
                     global_input_values: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The window-independent part of the network for consecutive steps of one song (`input_features`
        `[steps, frames, mels]`, `harmonic_features` `[steps, 38]`, `global_input_values` `[steps,
        samples_per_step]`): the keyword arguments of `window_logits`, per step, for `StreamingPrediction`."""
        self._check_inputs(input_features[None], None, None if harmonic_features is None else harmonic_features[None])
        local, summary = self.dsaml.features.step_features(input_features[None])
        encoded = {"local": local[0]}
        if summary is not None:
            encoded["summary"] = summary[0]
        if harmonic_features is not None:
            encoded["harmonic_features"] = harmonic_features
        if global_input_values is not None:
            encoded["global_input_values"] = global_input_values
        return encoded

    @torch.no_grad()
    def window_logits(self, local: torch.Tensor, summary: torch.Tensor | None = None,
                      harmonic_features: torch.Tensor | None = None,
                      global_input_values: torch.Tensor | None = None) -> torch.Tensor:
        """`[B, n, 2]` logits of `B` unpadded windows of `n` steps from their steps' `encode_steps` values
        stacked (`global_input_values` `[B, n, samples_per_step]`): the same numbers as `forward`."""
        if global_input_values is not None:
            global_input_values = global_input_values.flatten(1)
        hidden = self.dsaml.encode_fused(local, summary, global_input_values, harmonic_features)
        return self.predictor(hidden, None, harmonic_features)

    def streaming(self, window_steps: int | None = None, hop_steps: int | None = None, batch_size: int = 1,
                  on_batch=None) -> StreamingPrediction:
        """A `StreamingPrediction` with this model's window and hop (or the given ones)."""
        return StreamingPrediction(self, window_steps or self.config.window_steps,
                                   hop_steps or self.config.hop_steps, batch_size, on_batch)

    @torch.no_grad()
    def predict_long(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        global_input_values: torch.Tensor | None = None,
        harmonic_features: torch.Tensor | None = None,
        window_steps: int | None = None,
        hop_steps: int | None = None,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """Predict songs of any length with sliding windows of `window_steps` every `hop_steps`.

        Every window sees the same context length as training; overlapping predictions are blended with a
        tapered (Hann-like) weight so window edges count less (`sliding_windows_dsaml`, the path streamed
        songs take too). The same hop serves arousal and valence. Windows run in mini-batches of
        `batch_size`. Returns `[B, S, 2]` (zeros on padded steps). Call `model.eval()` first for
        deterministic output.
        """
        window = window_steps or self.config.window_steps
        hop = hop_steps or self.config.hop_steps
        if window <= 0 or hop <= 0:
            raise ValueError(f"window_steps and hop_steps must be > 0, got {window}, {hop}")
        self._check_inputs(input_features, attention_mask, harmonic_features)
        batch, steps = input_features.shape[:2]
        lengths = attention_mask.sum(1).tolist() if attention_mask is not None else [steps] * batch
        stream = self.streaming(window, hop, batch_size)
        songs = []
        for b, length in enumerate(int(x) for x in lengths):
            inputs = {"input_features": input_features[b, :length]}
            if harmonic_features is not None:
                inputs["harmonic_features"] = harmonic_features[b, :length]
            if global_input_values is not None:
                per_step = self.config.samples_per_step
                inputs["global_input_values"] = step_samples(global_input_values[b], 0, length, per_step).view(
                    length, per_step)
            song = stream.open()
            chunk = max(window, 64)  # bounds the local CNN's working memory on long songs
            for first in range(0, length, chunk):
                stream.push(song, {name: value[first : first + chunk] for name, value in inputs.items()})
            stream.finish(song)
            songs.append((song, length))
        stream.flush()
        out = input_features.new_zeros(batch, steps, len(LABEL_NAMES), dtype=torch.float32)
        for b, (song, length) in enumerate(songs):
            out[b, :length] = stream.pop(song)
        return out


DSAMLConfig.register_for_auto_class()
DSAMLForDynamicEmotionRecognition.register_for_auto_class("AutoModel")

__all__ = [
    "window_starts",
    "DSAMLEmotionOutput",
    "DSAMLForDynamicEmotionRecognition",
    "DSAMLModel",
    "DSAMLModelOutput",
    "DSAMLPreTrainedModel",
]
