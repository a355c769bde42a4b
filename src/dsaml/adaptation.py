"""The meta-learned inner loop: SGD on functional fast weights.

Meta-training (every algorithm in `dsaml.meta`) and personalization (`dsaml.personalize`) both adapt through
`adapt`, so a listener is personalized with exactly the steps, learning rate and parameter subset the model was
meta-trained with. Fast weights are plain tensors passed to `torch.func.functional_call`; the module's own
parameters are never modified, which keeps the outer optimizer (and DDP) oblivious to the inner loop.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call


def matches(name: str, patterns: Sequence[str]) -> bool:
    """A parameter is selected by a pattern equal to it, a module prefix of it, or a glob matching it."""
    return any(name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p) for p in patterns)


def adaptable_parameters(model: nn.Module, patterns: Sequence[str] | None = None) -> dict[str, nn.Parameter]:
    """The trainable parameters the inner loop adapts: all of them, or those selected by `patterns`
    (default: `model.config.adapted_parameters`; empty means all)."""
    if patterns is None:
        patterns = list(getattr(getattr(model, "config", None), "adapted_parameters", None) or [])
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


def adapt(
    model: nn.Module,
    support: Mapping[str, torch.Tensor],
    *,
    steps: int | None = None,
    lr: float | None = None,
    params: Mapping[str, torch.Tensor] | None = None,
    second_order: bool = False,
    max_delay: int = 0,
) -> dict[str, torch.Tensor]:
    """Run `steps` SGD steps of size `lr` on the support batch and return the fast weights (or, for
    `config.adaptation_method == "ridge"`, the closed-form output layer of `ridge_adapt`).

    Args:
        model: the (unwrapped) model; it is not modified.
        support: a model batch with `labels` (see `dsaml.batches.collate`).
        steps, lr: default to `model.config.adaptation_steps` / `adaptation_lr`.
        params: starting weights (default: `adaptable_parameters(model)`, i.e. the meta-parameters themselves).
        second_order: keep the graph through the inner updates (MAML); first-order otherwise (FOMAML, Reptile,
            personalization), where each step's gradient is treated as a constant.
        max_delay: the ridge refit also chooses the listener's reaction lag up to this many steps
            (`ridge_adapt`; personalization and meta-training pass `config.adaptation_max_delay`).
    """
    config = getattr(model, "config", None)
    steps = steps if steps is not None else config.adaptation_steps
    lr = lr if lr is not None else config.adaptation_lr
    if steps < 0:
        raise ValueError(f"adaptation steps must be >= 0, got {steps}")
    fast = dict(params if params is not None else adaptable_parameters(model))
    names = list(fast)
    if getattr(config, "adaptation_method", "sgd") == "ridge":
        return ridge_adapt(model, support, fast, max_delay=max_delay)
    if max_delay:
        raise ValueError("a reaction-lag delay (max_delay) is chosen by the ridge refit: set adaptation_method: ridge")
    if steps and adapts_predictor_only(model, names):
        return _adapt_predictor(model, support, fast, steps=steps, lr=lr, second_order=second_order)
    for _ in range(steps):
        loss = functional_loss(model, fast, support)
        grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=second_order, allow_unused=True)
        fast = {n: (fast[n] - lr * g if g is not None else fast[n]) for n, g in zip(names, grads)}
    return fast


PREDICTOR = "predictor."


def adapts_predictor_only(model: nn.Module, names: Sequence[str]) -> bool:
    """True when every adapted parameter belongs to the BiLSTM predictor (e.g. `adapted_parameters:
    [predictor]`): the encoder's output then does not change during the inner loop."""
    return hasattr(model, "predictor") and hasattr(model, "label_loss") and all(n.startswith(PREDICTOR) for n in names)


def _adapt_predictor(model, support, fast, *, steps: int, lr: float, second_order: bool) -> dict[str, torch.Tensor]:
    """`adapt` for predictor-only fast weights: the encoder runs ONCE on the support batch and the inner steps
    run the predictor alone on its output. The gradients are those of the full model's loss (the diagonal
    attention loss does not depend on the predictor); only the encoder's dropout masks are drawn once instead
    of once per step. MAML keeps the encoder's graph, so second-order terms reach the encoder's parameters."""
    mask = support.get("attention_mask")
    hidden = model.dsaml.encode(support["input_features"], mask, support.get("global_input_values"),
                                support.get("harmonic_features"))[0]
    if not second_order:
        hidden = hidden.detach()  # first order: the inner gradients are constants w.r.t. the encoder
    head = {n[len(PREDICTOR):]: v for n, v in fast.items()}
    names = list(head)
    for _ in range(steps):
        logits = functional_call(model.predictor, head, (hidden, mask, support.get("harmonic_features")),
                                 strict=False)
        loss = model.label_loss(logits, support["labels"], mask, support.get("labels_mask"))[0]
        grads = torch.autograd.grad(loss, [head[n] for n in names], create_graph=second_order, allow_unused=True)
        head = {n: (head[n] - lr * g if g is not None else head[n]) for n, g in zip(names, grads)}
    return {PREDICTOR + n: v for n, v in head.items()}


RIDGE_PARAMETERS = ("predictor.out.weight", "predictor.out.bias")


def ridge_settings(model) -> tuple[torch.Tensor, torch.Tensor]:
    """The ridge inner loop's (strength, level share) per dimension, `[2]` each: the meta-learned ones of
    `predictor.ridge` (`config.learn_adaptation_ridge`), else the config's."""
    learned = getattr(model.predictor, "ridge", None)
    if learned is not None:
        return learned()
    config = model.config
    dims = model.predictor.out.out_features
    return (torch.full((dims,), float(config.adaptation_ridge), dtype=torch.float64),
            torch.full((dims,), float(getattr(config, "adaptation_level_share", 1.0)), dtype=torch.float64))


def readout_inputs(model, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """`[B, S, d]`: what the output layer reads on `batch` (the ridge refits and `dsaml.average_readout` solve
    for the layer on these)."""
    mask = batch.get("attention_mask")
    hidden = model.dsaml.encode(batch["input_features"], mask, batch.get("global_input_values"),
                                batch.get("harmonic_features"))[0]
    return model.predictor.readout_features(hidden, mask, batch.get("harmonic_features"))


def ridge_penalty(gram: torch.Tensor, strength: torch.Tensor | float) -> torch.Tensor:
    """The ridge penalty for a centred Gram matrix: `strength` times its trace over its size, so a strength
    means the same whatever the features' scale or the number of steps."""
    return strength * torch.trace(gram).clamp_min(1e-12) / gram.shape[0]


DELAY = "predictor.delay.steps"  # the listener's reaction lag (`config.adaptation_max_delay`), a buffer


def ridge_adapt(model, support, fast, *, strength=None, level_share=None,
                max_delay: int = 0) -> dict[str, torch.Tensor]:
    """The output layer refitted in closed form on the support batch (the `"ridge"` inner loop).

    With the predictor's last hidden features X (centred over the support's labelled steps) and labels Y, for
    each dimension d (arousal, valence) with its own strength s_d and level share a_d (`ridge_settings`):

        w_d = argmin ||y_d,c - X_c w||^2 + lam_d ||w - w_0,d||^2,  lam_d = s_d * trace(X_c^T X_c) / dim
        level_d = l_0,d + a_d (mean(y_d) - l_0,d),  l_0,d = w_0,d mean(X) + b_0,d (the base model's mean)
        b_d = level_d - w_d mean(X)

    W_0 is the meta-learned output layer (the fast weights given): a listener's labels move the readout of the
    features the encoder learned, not only its level, while the pull toward W_0 keeps one song from
    overfitting; a_d < 1 trusts the song's level less (a real listener's offset on one song says little about
    the next). The solve is differentiable, so meta-training gets the exact gradient through the inner loop,
    to the encoder and to learned settings alike, whichever algorithm (`fomaml` or `maml`) drives it.
    `strength` / `level_share` (floats or `[2]`) replace the model's settings.

    With `max_delay` > 0 (`config.adaptation_max_delay`) the listener's reaction lag is fitted too: the refit
    is solved with X delayed by each lag of 0..max_delay steps within the windows (as `predictor.delay` delays
    the output curve), and the lag whose refit leaves the smallest squared error on the support song, both
    dimensions together, is kept in the fast weights' `predictor.delay.steps` (a choice, not differentiated:
    the meta-gradient is the refit's at the chosen lag)."""
    if sorted(fast) != sorted(RIDGE_PARAMETERS):
        raise ValueError(f"the ridge inner loop adapts exactly {list(RIDGE_PARAMETERS)}; set adapted_parameters: "
                         f"[predictor.out] (got {sorted(fast)})")
    def per_dimension(value, default: torch.Tensor) -> torch.Tensor:
        return default if value is None else torch.as_tensor(value, dtype=torch.float64).expand(default.shape)

    default_strength, default_share = ridge_settings(model)
    strength, level_share = per_dimension(strength, default_strength), per_dimension(level_share, default_share)
    mask = support.get("attention_mask")
    features = readout_inputs(model, support)
    keep = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
    for m in (mask, support.get("labels_mask")):
        if m is not None:
            keep = keep & m.bool()
    labels = support["labels"][keep].double()
    w0, b0 = fast["predictor.out.weight"].double(), fast["predictor.out.bias"].double()
    delay = model.predictor.delay
    fits = []
    for lag in range(int(max_delay) + 1):
        x = delay(features, torch.full((features.shape[-1],), lag, dtype=torch.long))[keep].double()
        weight, bias = _ridge_solve(x, labels, w0, b0, strength, level_share)
        error = float(((x @ weight.T + bias - labels) ** 2).sum().detach()) if max_delay else 0.0
        fits.append((error, lag, weight, bias))
    _, lag, weight, bias = min(fits, key=lambda fit: fit[0])  # ties: the shorter lag
    dtype = fast["predictor.out.weight"].dtype
    out = {"predictor.out.weight": weight.to(dtype), "predictor.out.bias": bias.to(dtype)}
    if max_delay:
        out[DELAY] = torch.full_like(delay.steps, lag)
    return out


def _ridge_solve(x: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, b0: torch.Tensor, strength: torch.Tensor,
                 level_share: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`ridge_adapt`'s closed form on rows `x` `[n, d]` and labels `y` `[n, 2]`: (weight `[2, d]`, bias `[2]`)."""
    x_mean, y_mean = x.mean(0, keepdim=True), y.mean(0, keepdim=True)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc
    lam = ridge_penalty(gram, strength.to(gram))  # [2]
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    system = gram[None] + lam[:, None, None] * eye  # one system per dimension
    weight = torch.linalg.solve(system, ((xc.T @ yc).T + lam[:, None] * w0)[..., None])[..., 0]
    base_level = x_mean @ w0.T + b0
    level = base_level + level_share.to(gram) * (y_mean - base_level)
    return weight, (level - x_mean @ weight.T)[0]
