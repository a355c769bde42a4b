"""Dual-scale attention transformer: ONE post-LN encoder run twice, under a local and a global band mask.

Reference: `models/layer/multi_scale_attention.py` (BERT/Q-Former layers with `relative_key` positions,
the same encoder instance for both passes), `utils/mask.py` (band masks), output sigmoid(local + global).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.activations import ACT2FN

from .configuration_dsaml import DSAMLConfig


def band_mask(num_steps: int, context: int, device=None) -> torch.Tensor:
    """`[S, S]` bool: step i may attend to step j when |i - j| <= context."""
    index = torch.arange(num_steps, device=device)
    return (index[:, None] - index[None, :]).abs() <= context


def additive_attention_mask(
    band: torch.Tensor | None, padding_mask: torch.Tensor | None, dtype: torch.dtype, batch: int, steps: int, device
) -> torch.Tensor | None:
    """Combine a band and key padding into a `[B, 1, S, S]` additive mask (0 = attend, dtype-min = blocked).

    The finite minimum (not -inf) keeps fully-masked padded query rows at a uniform, NaN-free softmax."""
    allowed = None
    if band is not None:
        allowed = band[None, None].expand(batch, 1, steps, steps)
    if padding_mask is not None:
        keys = padding_mask.bool()[:, None, None, :].expand(batch, 1, steps, steps)
        allowed = keys if allowed is None else allowed & keys
    if allowed is None:
        return None
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)


class DSAMLSelfAttention(nn.Module):
    def __init__(self, config: DSAMLConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.max_relative_positions = config.max_relative_positions
        if config.position_embedding_type == "relative_key":
            # Shaw / BERT `relative_key`: one learned vector per distance in [-(P-1), P-1]
            self.distance_embedding = nn.Embedding(2 * config.max_relative_positions - 1, self.head_dim)
        else:
            self.distance_embedding = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = x.shape
        return x.view(batch, steps, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self._heads(self.query(hidden)), self._heads(self.key(hidden)), self._heads(self.value(hidden))
        scores = q @ k.transpose(-1, -2)
        if self.distance_embedding is not None:
            steps = hidden.shape[1]
            index = torch.arange(steps, device=hidden.device)
            limit = self.max_relative_positions - 1
            distance = (index[:, None] - index[None, :]).clamp(-limit, limit) + limit
            positions = self.distance_embedding(distance).to(q.dtype)  # [S, S, head_dim]
            scores = scores + torch.einsum("bhld,lrd->bhlr", q, positions)
        scores = scores / math.sqrt(self.head_dim)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = scores.softmax(dim=-1)
        context = self.dropout(probs) @ v
        batch, _, steps, _ = context.shape
        return context.transpose(1, 2).reshape(batch, steps, -1), probs


class DSAMLEncoderLayer(nn.Module):
    """BERT layer: attention -> dense -> dropout -> LayerNorm(+res) -> FFN -> dropout -> LayerNorm(+res)."""

    def __init__(self, config: DSAMLConfig):
        super().__init__()
        self.attention = DSAMLSelfAttention(config)
        self.attention_output = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        attended, probs = self.attention(hidden, attention_mask)
        hidden = self.attention_norm(hidden + self.dropout(self.attention_output(attended)))
        ffn = self.output(self.activation(self.intermediate(hidden)))
        return self.output_norm(hidden + self.dropout(ffn)), probs


class DSAMLEncoder(nn.Module):
    def __init__(self, config: DSAMLConfig):
        super().__init__()
        self.layers = nn.ModuleList(DSAMLEncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maps = []
        for layer in self.layers:
            hidden, probs = layer(hidden, attention_mask)
            maps.append(probs)
        return hidden, maps


class DualScaleAttentionTransformer(nn.Module):
    """Local pass (band +-local_context_steps) and global pass (band +-global_context_steps) through the SAME
    encoder weights; output sigmoid(local + global). Attention maps come back local layers first, as in the
    reference code's `[B, 2N, heads, S, S]`."""

    def __init__(self, config: DSAMLConfig):
        super().__init__()
        self.config = config
        self.encoder = DSAMLEncoder(config)

    def _mask(self, hidden, padding_mask, context: int | None):
        batch, steps, _ = hidden.shape
        band = None if context is None else band_mask(steps, context, hidden.device)
        return additive_attention_mask(band, padding_mask, hidden.dtype, batch, steps, hidden.device)

    def _pass(self, hidden, padding_mask, context: int | None):
        return self.encoder(hidden, self._mask(hidden, padding_mask, context))

    def forward(
        self, hidden: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Returns (output, local attention maps, global attention maps)."""
        cfg = self.config
        if cfg.use_local_attention and cfg.use_global_attention and not self.training:
            # the two passes share every weight: run them as one batch of twice the rows, which fills the
            # matrix products better than two passes one after the other (~20 % faster on CPU, same numbers).
            # Not in training: the dropout masks would be drawn in another order than in earlier runs
            batch = hidden.shape[0]
            masks = torch.cat([self._mask(hidden, padding_mask, cfg.local_context_steps),
                               self._mask(hidden, padding_mask, cfg.global_context_steps)])
            both, maps = self.encoder(torch.cat([hidden, hidden]), masks)
            local_maps, global_maps = [m[:batch] for m in maps], [m[batch:] for m in maps]
            return torch.sigmoid(both[:batch] + both[batch:]), local_maps, global_maps
        if cfg.use_local_attention and cfg.use_global_attention:
            local_out, local_maps = self._pass(hidden, padding_mask, cfg.local_context_steps)
            global_out, global_maps = self._pass(hidden, padding_mask, cfg.global_context_steps)
            return torch.sigmoid(local_out + global_out), local_maps, global_maps
        if cfg.use_local_attention or cfg.use_global_attention:  # single-branch ablation: no sigmoid, as in the reference
            context = cfg.local_context_steps if cfg.use_local_attention else cfg.global_context_steps
            output, maps = self._pass(hidden, padding_mask, context)
            return output, (maps if cfg.use_local_attention else []), (maps if cfg.use_global_attention else [])
        output, maps = self._pass(hidden, padding_mask, None)  # both off: one unmasked pass
        return output, maps, []
