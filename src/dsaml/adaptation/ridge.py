"""The closed-form inner loop: the output layer refitted on the support song by ridge regression.

Shrunk toward the meta-learned layer, with a strength and a level share per dimension (fixed, or meta-learned
as `predictor.ridge`), and optionally a reaction lag chosen with it (`predictor.delay`). Differentiable, so
meta-training gets the exact gradient through it (R2-D2-style, Bertinetto et al., ICLR 2019).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from dsaml.adaptation.config import PersonalizationConfig
from dsaml.adaptation.tensors import DELAY

__all__ = ["RIDGE_PARAMETERS", "readout_inputs", "ridge_adapt", "ridge_penalty", "ridge_settings"]


RIDGE_PARAMETERS = ("predictor.out.weight", "predictor.out.bias")


def ridge_settings(model, recipe: PersonalizationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The ridge inner loop's (strength, level share) per dimension, `[2]` each: the meta-learned ones of
    `predictor.ridge` (`config.learn_adaptation_ridge`), else the recipe's."""
    learned = getattr(model.predictor, "ridge", None)
    if learned is not None:
        return learned()
    dims = model.predictor.out.out_features
    return (torch.full((dims,), float(recipe.ridge_strength), dtype=torch.float64),
            torch.full((dims,), float(recipe.level_share), dtype=torch.float64))


def readout_inputs(model, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """`[B, S, d]`: what the output layer reads on `batch` (the ridge refits and `dsaml.training.average_readout` solve
    for the layer on these)."""
    mask = batch.get("attention_mask")
    hidden = model.dsaml.encode(batch["input_features"], mask, batch.get("global_input_values"),
                                batch.get("harmonic_features"))[0]
    return model.predictor.readout_features(hidden, mask, batch.get("harmonic_features"))


def ridge_penalty(gram: torch.Tensor, strength: torch.Tensor | float) -> torch.Tensor:
    """The ridge penalty for a centred Gram matrix: `strength` times its trace over its size, so a strength
    means the same whatever the features' scale or the number of steps."""
    return strength * torch.trace(gram).clamp_min(1e-12) / gram.shape[0]


def ridge_adapt(model, support, fast, recipe: PersonalizationConfig, *, strength=None,
                level_share=None) -> dict[str, torch.Tensor]:
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

    With `recipe.max_delay` > 0 the listener's reaction lag is fitted too: the refit is solved with X delayed by
    each lag of 0..max_delay steps within the windows (as `predictor.delay` delays the output curve), and the lag
    whose refit leaves the smallest squared error on the support song, both dimensions together, is kept in the
    fast weights' `predictor.delay.steps` (a choice, not differentiated: the meta-gradient is the refit's at the
    chosen lag)."""
    if sorted(fast) != sorted(RIDGE_PARAMETERS):
        raise ValueError(f"the ridge inner loop adapts exactly {list(RIDGE_PARAMETERS)}; set adapted_parameters: "
                         f"[predictor.out] (got {sorted(fast)})")

    def per_dimension(value, default: torch.Tensor) -> torch.Tensor:
        return default if value is None else torch.as_tensor(value, dtype=torch.float64).expand(default.shape)

    default_strength, default_share = ridge_settings(model, recipe)
    strength, level_share = per_dimension(strength, default_strength), per_dimension(level_share, default_share)
    features = readout_inputs(model, support)
    keep = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
    for m in (support.get("attention_mask"), support.get("labels_mask")):
        if m is not None:
            keep = keep & m.bool()
    lag, weight, bias = _fit_with_lag(model, features, keep, support["labels"][keep].double(),
                                      fast["predictor.out.weight"].double(), fast["predictor.out.bias"].double(),
                                      strength, level_share, int(recipe.max_delay))
    dtype = fast["predictor.out.weight"].dtype
    out = {"predictor.out.weight": weight.to(dtype), "predictor.out.bias": bias.to(dtype)}
    if recipe.max_delay:
        out[DELAY] = torch.full_like(model.predictor.delay.steps, lag)
    return out


def _fit_with_lag(model, features, keep, labels, w0, b0, strength, level_share,
                  max_delay: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(lag, weight, bias): the refit at each lag of 0..max_delay, the one with the least squared error kept
    (ties: the shorter lag)."""
    delay = model.predictor.delay
    fits = []
    for lag in range(max_delay + 1):
        x = delay(features, torch.full((features.shape[-1],), lag, dtype=torch.long))[keep].double()
        weight, bias = _ridge_solve(x, labels, w0, b0, strength, level_share)
        error = float(((x @ weight.T + bias - labels) ** 2).sum().detach()) if max_delay else 0.0
        fits.append((error, lag, weight, bias))
    _, lag, weight, bias = min(fits, key=lambda fit: fit[0])
    return lag, weight, bias


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
