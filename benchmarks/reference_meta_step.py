"""The meta-step the way the official DSAML code does it, in plain PyTorch (learn2learn does not install on
Python 3.11): for every task, a deep copy of the model ("clone") is adapted step by step with SGD on the
support batch, then the query loss is back-propagated through the adapted copy; first order, so the copy's
parameter gradients ARE the task's meta-gradient. The mean over tasks is the meta-gradient.

Same losses as `dsaml.training.meta` (the model's own `loss`), same inner steps and learning rate, and the same dropout
masks when tasks carry a seed (the RNG is forked and seeded per task, as `dsaml.training.meta.task_gradient` does, and
the forward passes happen in the same order), so the result can be compared with `meta_gradient(...,
algorithm="fomaml")` number for number.

    from reference_meta_step import reference_meta_gradient
    grads, stats = reference_meta_gradient(model, tasks, steps=4, lr=5e-3)

`adapted` (parameter-name prefixes, e.g. ["predictor"]) restricts the inner SGD to those parameters, as
`adapted_parameters` does in dsaml (the other parameters are frozen during the inner loop, so no gradient is
computed for them); the copy still runs the whole forward pass at every inner step, as the official code's clone
would.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence

import torch

from dsaml.adaptation.config import personalization_config


def _task(model, task, steps: int, lr: float, adapted: Sequence[str] | None) -> tuple[dict[str, torch.Tensor], float]:
    learner = copy.deepcopy(model)  # learn2learn: maml.clone()
    learner.train(model.training)
    trainable = [(n, p) for n, p in learner.named_parameters() if p.requires_grad]
    adapts = [not adapted or any(n == a or n.startswith(a + ".") for a in adapted) for n, _ in trainable]
    inner = [p for (_, p), a in zip(trainable, adapts) if a]
    frozen = [p for (_, p), a in zip(trainable, adapts) if not a]
    for p in frozen:  # the inner loop needs no gradient for the parameters it does not adapt
        p.requires_grad_(False)
    optimizer = torch.optim.SGD(inner, lr=lr)
    for _ in range(steps):  # learner.adapt(loss) with first_order=True
        optimizer.zero_grad(set_to_none=True)
        loss = learner(**task.support, return_dict=True).loss
        loss.backward()
        optimizer.step()
    for p in frozen:
        p.requires_grad_(True)
    optimizer.zero_grad(set_to_none=True)
    query_loss = learner(**task.query, return_dict=True).loss
    query_loss.backward()
    grads = {
        name: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
        for name, p in learner.named_parameters()
        if p.requires_grad
    }
    return grads, float(query_loss.detach())


def reference_meta_gradient(model, tasks: Sequence, *, steps: int | None = None, lr: float | None = None,
                            adapted: Sequence[str] | None = None):
    """First-order meta-gradient (mean over `tasks`, each a `dsaml.training.meta.TaskBatch`) computed with per-task deep
    copies and step-by-step SGD; returns (name -> gradient, {"query_loss": mean})."""
    recipe = personalization_config(model)
    steps = recipe.steps if steps is None else steps
    lr = recipe.learning_rate if lr is None else lr
    total: dict[str, torch.Tensor] = {}
    losses = []
    for task in tasks:
        ctx = torch.random.fork_rng(devices=[]) if task.seed is not None else contextlib.nullcontext()
        with ctx:
            if task.seed is not None:
                torch.manual_seed(task.seed % 2**63)
            grads, loss = _task(model, task, steps, lr, adapted)
        for name, g in grads.items():
            total[name] = total[name] + g if name in total else g
        losses.append(loss)
    n = len(tasks)
    return {k: g / n for k, g in total.items()}, {"query_loss": sum(losses) / n}
