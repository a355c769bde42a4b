"""Meta-gradients of annotator tasks: FOMAML (default), second-order MAML, Reptile, and plain training.

Each algorithm turns one task (support batch, query batch) into a gradient for the meta-parameters, computed
functionally (`dsaml.adaptation.inner_loop.adapt`, with the model's `PersonalizationConfig`: fast weights through `torch.func.functional_call`), so the module's
parameters and `.grad` are untouched until `apply_meta_gradient` writes the average of the local tasks,
averaged again across processes with `accelerator.reduce(..., "mean")`. Because every process contributes
the mean of the same number of tasks, N processes produce exactly the update one process would on the
whole meta-batch.

- fomaml: adapt on the support set (first order), gradient of the query loss at the adapted weights.
- maml: the same through the inner loop's second-order terms (`create_graph=True`).
- reptile: adapt on support + query; the meta-gradient is (theta - phi) / (steps * lr), i.e. the mean inner
  gradient, so the outer learning rate means the same as for the other algorithms.
- plain: no adaptation, gradient of the loss on support + query (ordinary DMER training in the same loop).
Parameters outside the adapted subset (the recipe's `adapted_parameters`) are meta-parameters only: they get the query-loss gradient at the adapted weights (for Reptile, on the task's data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from dsaml.adaptation.config import PersonalizationConfig, personalization_config
from dsaml.adaptation.inner_loop import adapt
from dsaml.adaptation.tensors import adaptable_parameters, functional_loss
from dsaml.data.batches import TaskBatch

ALGORITHMS = ("fomaml", "maml", "reptile", "plain")


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def task_gradient(
    model: nn.Module,
    task: TaskBatch,
    *,
    algorithm: str = "fomaml",
    recipe: PersonalizationConfig | None = None,
    base_loss_weight: float = 0.0,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The meta-gradient of one task for every trainable parameter (zeros where the loss does not depend on it),
    and `{"query_loss": ...}` (the loss the gradient is taken of, after adaptation). The inner loop is `recipe`'s
    (default: the model's, `personalization_config`).

    `base_loss_weight` > 0 (fomaml, maml) adds that weight times the query loss of the UNADAPTED model: the
    meta-parameters then also stay a good prediction for a listener nobody has personalized yet, which an
    inner loop that refits the output layer (`method="ridge"`) would otherwise not ask of them."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown meta-learning algorithm {algorithm!r}; choose one of {ALGORITHMS}")
    recipe = personalization_config(model) if recipe is None else recipe
    if task.seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(task.seed % 2**63)
            return _task_gradient(model, task, algorithm, recipe, base_loss_weight)
    return _task_gradient(model, task, algorithm, recipe, base_loss_weight)


def _task_gradient(model, task, algorithm, recipe: PersonalizationConfig, base_loss_weight=0.0):
    steps, lr = recipe.steps, recipe.learning_rate
    params = trainable_parameters(model)
    fast_start = adaptable_parameters(model, recipe.adapted_parameters)
    names = list(params)

    if algorithm == "plain":
        loss = functional_loss(model, {}, task.combined())
        fast = {}
    elif algorithm == "reptile":
        if steps < 1:
            raise ValueError("reptile needs at least one adaptation step")
        data = task.combined()
        fast = adapt(model, data, recipe.replace(max_delay=0), params=fast_start)
        # the meta-gradient of the adapted parameters is the weight change; the others learn on the task's data
        loss = functional_loss(model, fast, data)
    else:
        fast = adapt(model, task.support, recipe, params=fast_start, second_order=algorithm == "maml")
        loss = functional_loss(model, fast, task.query)
        if base_loss_weight:
            loss = loss + base_loss_weight * functional_loss(model, {}, task.query)

    grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    out = {n: (g if g is not None else torch.zeros_like(params[n])) for n, g in zip(names, grads)}
    if algorithm == "reptile":
        scale = 1.0 / (steps * lr)
        for n in fast:
            out[n] = (params[n].detach() - fast[n].detach()) * scale
    return out, {"query_loss": float(loss.detach())}


def meta_gradient(
    model: nn.Module, tasks: Sequence[TaskBatch], **kwargs
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The mean of `task_gradient` over `tasks` (this process's share of a meta-batch), and mean stats."""
    if not tasks:
        raise ValueError("meta_gradient needs at least one task")
    total: dict[str, torch.Tensor] = {}
    stats: dict[str, float] = {}
    for task in tasks:
        grads, task_stats = task_gradient(model, task, **kwargs)
        for name, g in grads.items():
            total[name] = total[name] + g if name in total else g
        for key, value in task_stats.items():
            stats[key] = stats.get(key, 0.0) + value
    n = len(tasks)
    return {k: g / n for k, g in total.items()}, {k: v / n for k, v in stats.items()}


def apply_meta_gradient(model: nn.Module, grads: Mapping[str, torch.Tensor], accelerator=None) -> None:
    """Write `grads` into the parameters' `.grad`, averaged across processes in ONE flat all-reduce."""
    params = trainable_parameters(model)
    missing = sorted(set(params) - set(grads))
    if missing:
        raise KeyError(f"meta-gradient missing for parameters {missing[:5]}")
    names = list(params)
    flat = torch.cat([grads[n].reshape(-1).to(params[n].dtype) for n in names])
    if accelerator is not None and accelerator.num_processes > 1:
        flat = accelerator.reduce(flat, reduction="mean")
    offset = 0
    for name in names:
        p = params[name]
        p.grad = flat[offset : offset + p.numel()].view_as(p).to(p.dtype).clone()
        offset += p.numel()
