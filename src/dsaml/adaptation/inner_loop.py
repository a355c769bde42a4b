"""The meta-learned inner loop: SGD on functional fast weights, or the ridge refit, as the recipe says.

Meta-training (every algorithm in `dsaml.training.meta`) and personalization (`dsaml.personalization`) both adapt
through `adapt` with the model's `PersonalizationConfig`, so a listener is personalized with exactly the steps,
learning rate and parameter subset the model was meta-trained with. Fast weights are plain tensors passed to
`torch.func.functional_call`; the module's own parameters are never modified, which keeps the outer optimizer
(and DDP) oblivious to the inner loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from dsaml.adaptation.config import PersonalizationConfig, personalization_config
from dsaml.adaptation.ridge import ridge_adapt
from dsaml.adaptation.tensors import adaptable_parameters, functional_loss

__all__ = ["PREDICTOR", "adapt", "adapts_predictor_only"]


def adapt(
    model: nn.Module,
    support: Mapping[str, torch.Tensor],
    recipe: PersonalizationConfig | None = None,
    *,
    params: Mapping[str, torch.Tensor] | None = None,
    second_order: bool = False,
) -> dict[str, torch.Tensor]:
    """The fast weights after the recipe's inner loop on the support batch: `recipe.steps` SGD steps of size
    `recipe.learning_rate`, or for `recipe.method == "ridge"` the closed-form output layer of `ridge_adapt` (with
    a reaction lag of up to `recipe.max_delay` steps).

    Args:
        model: the (unwrapped) model; it is not modified.
        support: a model batch with `labels` (see `dsaml.data.batches.collate`).
        recipe: default `personalization_config(model)`.
        params: starting weights (default: `adaptable_parameters(model, recipe.adapted_parameters)`).
        second_order: keep the graph through the inner updates (MAML); first-order otherwise (FOMAML, Reptile,
            personalization), where each step's gradient is treated as a constant.
    """
    recipe = personalization_config(model) if recipe is None else recipe
    steps, lr = recipe.steps, recipe.learning_rate
    fast = dict(params if params is not None else adaptable_parameters(model, recipe.adapted_parameters))
    names = list(fast)
    if recipe.method == "ridge":
        return ridge_adapt(model, support, fast, recipe)
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
