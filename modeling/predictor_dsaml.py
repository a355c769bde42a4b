"""The sequence predictor: BiLSTM -> Linear -> Dropout -> Linear(2), with what an inner loop may set on it.

Reference: `models/layer/predicton.py` (sic) of the official code. Beside the reference's layers it holds the
ridge inner loop's learned settings (`RidgeSettings`) and a listener's reaction lag (`OutputDelay`), both empty
or zero in a model nobody personalized.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .configuration_dsaml import LABEL_NAMES, DSAMLConfig
from .harmonic_dsaml import NUM_READOUT_CUES, readout_cues

__all__ = ["EmotionPredictor", "OutputDelay", "RidgeSettings"]


class RidgeSettings(nn.Module):
    """The ridge inner loop's settings as meta-parameters (`config.learn_adaptation_ridge`), one per dimension
    (arousal, valence): its pull toward the meta-learned output layer, on a log scale, and the share of the
    support song's mean residual that moves the curve's level, on a logit scale. Created at a pull of 1 and a
    share of 0.99; meta-training starts them where its recipe says (`reset`), and a trained model's are loaded."""

    def __init__(self):
        super().__init__()
        dims = len(LABEL_NAMES)
        self.log_strength = nn.Parameter(torch.zeros(dims))
        self.level_logit = nn.Parameter(torch.zeros(dims))
        self.reset(1.0, 1.0)

    @torch.no_grad()
    def reset(self, strength: float, level_share: float) -> None:
        """Start both dimensions at `strength` (at least 1e-4) and `level_share` (clipped to [0.01, 0.99]: a finite
        logit)."""
        share = min(max(float(level_share), 0.01), 0.99)
        self.log_strength.fill_(math.log(max(float(strength), 1e-4)))
        self.level_logit.fill_(math.log(share / (1 - share)))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(strength, level share), each `[2]`."""
        return self.log_strength.exp(), torch.sigmoid(self.level_logit)


class OutputDelay(nn.Module):
    """A listener's reaction lag: each dimension's curve delayed by `steps[d]` steps within the window, its first
    steps holding the window's first prediction. Zero (no delay) in a trained model; personalization's ridge
    refit sets it (dsaml's personalization recipe: `max_delay`). A buffer, so it is saved with the weights and a LoRA adapter
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
        self.ridge = RidgeSettings() if config.learn_adaptation_ridge else None
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
