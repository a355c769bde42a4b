"""Which tensors an inner loop adapts, and the model's loss with fast weights in their place.

Fast weights are plain tensors passed to `torch.func.functional_call`; the module's own parameters are never
modified, which keeps the outer optimizer (and DDP) oblivious to the inner loop.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["DELAY", "adaptable_parameters", "functional_loss", "matches", "named_tensors"]

DELAY = "predictor.delay.steps"  # the listener's reaction lag (a buffer the ridge refit may set)


def matches(name: str, patterns: Sequence[str]) -> bool:
    """A parameter is selected by a pattern equal to it, a module prefix of it, or a glob matching it."""
    return any(name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p) for p in patterns)


def adaptable_parameters(model: nn.Module, patterns: Sequence[str]) -> dict[str, nn.Parameter]:
    """The trainable parameters an inner loop adapts: those selected by `patterns` (a recipe's
    `adapted_parameters`), or all of them when it is empty."""
    selected = {
        name: p for name, p in model.named_parameters() if p.requires_grad and (not patterns or matches(name, patterns))
    }
    if not selected:
        raise ValueError(f"no trainable parameter matches adapted_parameters={list(patterns)}")
    return selected


def named_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by name: what fast weights may name (the reaction lag is a buffer, `DELAY`)."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def functional_loss(model: nn.Module, params: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The model's loss on `batch` with `params` in place of (some of) its parameters."""
    output = functional_call(model, dict(params), args=(), kwargs={**batch, "return_dict": True}, strict=False)
    if output.loss is None:
        raise ValueError("the adaptation batch needs `labels`")
    return output.loss
