"""Meta-gradients against closed forms: FOMAML, MAML, Reptile and plain on a linear model whose gradients and
Hessian are known exactly, then the second-order relation and process-count invariance on DSAML itself."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import small_config, with_recipe
from torch import nn

from dsaml import DSAMLForDynamicEmotionRecognition
from dsaml.adaptation.config import PersonalizationConfig
from dsaml.adaptation.tensors import functional_loss
from dsaml.data.alignment import AlignedSong
from dsaml.data.batches import TaskBatch, collate, concat_batches
from dsaml.errors import ConfigError
from dsaml.training.meta import apply_meta_gradient, meta_gradient, task_gradient


class Linear(nn.Module):
    """y = X w + b with mean squared error: gradients and the Hessian in closed form."""

    def __init__(self, dim: int = 3, steps: int = 1, lr: float = 0.1, adapted=()) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5, -1.0, 2.0][:dim], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
        self.personalization_config = PersonalizationConfig(steps=steps, learning_rate=lr,
                                                            adapted_parameters=list(adapted))

    def forward(self, input_features, labels=None, attention_mask=None, return_dict=True, **kwargs):
        prediction = input_features @ self.w + self.b
        return SimpleNamespace(loss=((prediction - labels) ** 2).mean())


def batch(seed: int, n: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 3, generator=g, dtype=torch.float64)  # [batch, steps=1, features]
    return {"input_features": x, "labels": torch.randn(n, 1, generator=g, dtype=torch.float64),
            "attention_mask": torch.ones(n, 1)}


def grad(w, b, data):
    """d/d(w, b) of mean((X w + b - y)^2)."""
    x, y = data["input_features"].reshape(-1, 3), data["labels"].reshape(-1)
    r = x @ w + b - y
    return 2 / r.numel() * x.T @ r, 2 / r.numel() * r.sum()


def hessian(data):
    x1 = torch.cat([data["input_features"].reshape(-1, 3), torch.ones(len(data["labels"]), 1, dtype=torch.float64)], 1)
    return 2 / len(data["labels"]) * x1.T @ x1


TASK = TaskBatch(batch(0), batch(1))


def test_fomaml_is_the_query_gradient_at_the_adapted_weights():
    model = Linear(steps=2, lr=0.1)
    w, b = model.w.detach().clone(), model.b.detach().clone()
    for _ in range(2):
        gw, gb = grad(w, b, TASK.support)
        w, b = w - 0.1 * gw, b - 0.1 * gb
    expected_w, expected_b = grad(w, b, TASK.query)
    grads, stats = task_gradient(model, TASK, algorithm="fomaml")
    torch.testing.assert_close(grads["w"], expected_w, rtol=0, atol=1e-12)
    torch.testing.assert_close(grads["b"], expected_b, rtol=0, atol=1e-12)
    r = TASK.query["input_features"] @ w + b - TASK.query["labels"]  # [n, 1]
    assert stats["query_loss"] == pytest.approx(float((r**2).mean()), abs=1e-12)
    assert model.w.grad is None  # computed functionally: the module is untouched


def test_maml_adds_exactly_the_second_order_term():
    model = Linear(steps=1, lr=0.1)
    first, _ = task_gradient(model, TASK, algorithm="fomaml")
    second, _ = task_gradient(model, TASK, algorithm="maml")
    g = torch.cat([first["w"], first["b"].reshape(1)])
    expected = (torch.eye(4, dtype=torch.float64) - 0.1 * hessian(TASK.support)) @ g
    torch.testing.assert_close(torch.cat([second["w"], second["b"].reshape(1)]), expected, rtol=0, atol=1e-12)
    assert (second["w"] - first["w"]).abs().max() > 1e-3  # the term is not negligible here
    # no inner step: nothing second-order to differ by
    zero = Linear(steps=0)
    a, _ = task_gradient(zero, TASK, algorithm="fomaml")
    c, _ = task_gradient(zero, TASK, algorithm="maml")
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_reptile_is_the_weight_change_over_steps_times_lr():
    model = Linear(steps=3, lr=0.05)
    data = TASK.combined()
    w, b = model.w.detach().clone(), model.b.detach().clone()
    for _ in range(3):
        gw, gb = grad(w, b, data)
        w, b = w - 0.05 * gw, b - 0.05 * gb
    grads, _ = task_gradient(model, TASK, algorithm="reptile")
    torch.testing.assert_close(grads["w"], (model.w.detach() - w) / 0.15, rtol=0, atol=1e-12)
    torch.testing.assert_close(grads["b"], (model.b.detach() - b) / 0.15, rtol=0, atol=1e-12)


def test_plain_is_the_gradient_on_support_and_query_together():
    model = Linear()
    grads, _ = task_gradient(model, TASK, algorithm="plain")
    expected_w, expected_b = grad(model.w.detach(), model.b.detach(), TASK.combined())
    torch.testing.assert_close(grads["w"], expected_w, rtol=0, atol=1e-12)
    torch.testing.assert_close(grads["b"], expected_b, rtol=0, atol=1e-12)


def test_adapting_a_subset_leaves_the_other_parameters_meta_only():
    model = Linear(steps=1, lr=0.1, adapted=["b"])
    w, b = model.w.detach().clone(), model.b.detach().clone()
    b_adapted = b - 0.1 * grad(w, b, TASK.support)[1]
    expected_w, expected_b = grad(w, b_adapted, TASK.query)  # w is NOT adapted: query gradient at (w, b')
    grads, _ = task_gradient(model, TASK, algorithm="fomaml")
    torch.testing.assert_close(grads["w"], expected_w, rtol=0, atol=1e-12)
    torch.testing.assert_close(grads["b"], expected_b, rtol=0, atol=1e-12)


def test_meta_gradient_is_the_mean_over_tasks_and_apply_writes_grad():
    model = Linear()
    tasks = [TASK, TaskBatch(batch(2), batch(3)), TaskBatch(batch(4), batch(5))]
    mean, stats = meta_gradient(model, tasks)
    singles = [task_gradient(model, t)[0] for t in tasks]
    torch.testing.assert_close(mean["w"], sum(s["w"] for s in singles) / 3, rtol=0, atol=1e-12)
    apply_meta_gradient(model, mean)
    assert torch.equal(model.w.grad, mean["w"]) and torch.equal(model.b.grad, mean["b"])
    with pytest.raises(KeyError, match="missing"):
        apply_meta_gradient(model, {"w": mean["w"]})
    with pytest.raises(ValueError, match="unknown meta-learning algorithm 'anil'"):
        task_gradient(model, TASK, algorithm="anil")


def _song(seed: int, steps: int, config) -> AlignedSong:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(steps, config.frames_per_step, config.num_mel_bins, generator=g)
    labels = torch.rand(steps, 2, generator=g) * 2 - 1
    return AlignedSong(f"s{seed}", "a", features, labels, 0)


@pytest.fixture(scope="module")
def dsaml_task():
    config = small_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, predictor_dropout=0.0)
    torch.manual_seed(0)
    model = with_recipe(DSAMLForDynamicEmotionRecognition(config).double(), steps=1, learning_rate=0.01)
    support = {k: v.double() if v.is_floating_point() else v for k, v in collate([_song(1, 12, config)]).items()}
    query = {k: v.double() if v.is_floating_point() else v
             for k, v in collate([_song(2, 12, config), _song(3, 9, config)]).items()}
    return model, TaskBatch(support, query, seed=7)


def test_dsaml_maml_minus_fomaml_is_the_hessian_vector_product(dsaml_task):
    """One inner step: MAML - FOMAML = -lr * H_support(theta) @ grad_query(theta')."""
    model, task = dsaml_task
    first, _ = task_gradient(model, task, algorithm="fomaml")
    second, _ = task_gradient(model, task, algorithm="maml")
    params = {n: p for n, p in model.named_parameters()}
    names = list(params)
    support_loss = functional_loss(model, {}, task.support)
    g = torch.autograd.grad(support_loss, [params[n] for n in names], create_graph=True)
    hvp = torch.autograd.grad(g, [params[n] for n in names], grad_outputs=[first[n] for n in names],
                              allow_unused=True)
    for name, h in zip(names, hvp):
        expected = first[name] - 0.01 * (h if h is not None else 0)
        torch.testing.assert_close(second[name], expected, rtol=1e-7, atol=1e-9)
    assert max((second[n] - first[n]).abs().max() for n in names) > 0


@pytest.mark.parametrize("algorithm", ["fomaml", "maml"])
def test_predictor_only_inner_loop_runs_the_encoder_once_with_the_same_gradients(dsaml_task, algorithm, monkeypatch):
    """adapted_parameters=[predictor]: the inner loop reuses the encoder output (one encoder pass instead of one
    per step) and gives the meta-gradient of the step-by-step full-model loop, second-order terms included."""
    from dsaml.adaptation import inner_loop

    model, task = dsaml_task
    params = dict(model.named_parameters())
    names = list(params)
    fast = {n: p for n, p in params.items() if n.startswith("predictor.")}
    for _ in range(2):  # the generic loop: the whole model's loss at every step
        loss = functional_loss(model, fast, task.support)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=algorithm == "maml")
        fast = {n: v - 0.01 * g for (n, v), g in zip(fast.items(), grads)}
    expected = torch.autograd.grad(functional_loss(model, fast, task.query), [params[n] for n in names],
                                   allow_unused=True)

    calls = []
    encode = model.dsaml.encode
    monkeypatch.setattr(model.dsaml, "encode", lambda *a, **k: calls.append(1) or encode(*a, **k))
    got, _ = task_gradient(model, task, algorithm=algorithm,
                           recipe=PersonalizationConfig(steps=2, learning_rate=0.01, adapted_parameters=["predictor"]))
    assert len(calls) == 2  # once for the support (not once per inner step), once for the query
    for name, e in zip(names, expected):
        torch.testing.assert_close(got[name], e if e is not None else torch.zeros_like(got[name]),
                                   rtol=1e-7, atol=1e-10)
    assert inner_loop.adapts_predictor_only(model, ["predictor.dense.weight"])
    assert not inner_loop.adapts_predictor_only(model, ["predictor.dense.weight", "dsaml.features.local_cnn.0.weight"])


def test_task_seed_makes_dropout_reproducible():
    torch.manual_seed(0)
    config = small_config()
    model = with_recipe(DSAMLForDynamicEmotionRecognition(config), steps=1)
    task = TaskBatch(collate([_song(1, 10, config)]), collate([_song(2, 10, config)]), seed=3)
    a, _ = task_gradient(model, task)
    torch.rand(5)  # the global RNG moves on; the task's gradient must not
    b, _ = task_gradient(model, task)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c, _ = task_gradient(model, TaskBatch(task.support, task.query, seed=4))
    assert any(not torch.equal(a[k], c[k]) for k in a)  # other dropout masks


def test_concat_batches_pads_steps():
    config = small_config()
    a, b = collate([_song(1, 6, config)]), collate([_song(2, 9, config), _song(3, 4, config)])
    both = concat_batches(a, b)
    assert both["input_features"].shape[:2] == (3, 9)
    assert both["attention_mask"].sum(1).tolist() == [6, 9, 4]
    assert torch.equal(both["labels"][0, :6], a["labels"][0]) and both["labels"][0, 6:].abs().sum() == 0


def support_readout(model, task) -> tuple[np.ndarray, np.ndarray]:
    """The output layer's inputs on the support song (steps x features) and its labels (steps x 2)."""
    with torch.no_grad():
        hidden = model.dsaml.encode(task.support["input_features"], task.support["attention_mask"])[0]
        x = model.predictor.readout_features(hidden, task.support["attention_mask"])[0].numpy()
    return x, task.support["labels"][0].numpy()


def assert_encoder_gradient(model, grads, loss) -> None:
    """`grads` of the local projection's weight, in a random direction, equal a central finite difference of
    `loss()` (the query loss recomputed through the inner loop)."""
    name = "dsaml.features.local_projection.weight"
    param = dict(model.named_parameters())[name]
    direction, eps, losses = torch.randn_like(param), 1e-6, []
    for sign in (1, -1):
        with torch.no_grad():
            param += sign * eps * direction
        losses.append(float(loss().detach()))
        with torch.no_grad():
            param -= sign * eps * direction
    numeric = (losses[0] - losses[1]) / (2 * eps)
    assert float((grads[name] * direction).sum()) == pytest.approx(numeric, rel=1e-5)


def test_ridge_inner_loop_is_the_closed_form_and_its_gradient_is_exact(dsaml_task):
    """method="ridge": the output layer solved on the support features (checked against numpy), the
    shift in the limit of a strong pull toward the meta-learned layer, and the meta-gradient equal to a finite
    difference through the solve (the solve is differentiated, not treated as a constant)."""
    from dsaml.adaptation.ridge import ridge_adapt

    model, task = dsaml_task
    out = model.predictor.out
    fast = {"predictor.out.weight": out.weight, "predictor.out.bias": out.bias}
    x, y = support_readout(model, task)
    xc, yc = x - x.mean(0), y - y.mean(0)
    lam = 0.3 * np.trace(xc.T @ xc) / x.shape[1]
    w0 = out.weight.detach().numpy()
    expected = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ yc + lam * w0.T).T
    got = ridge_adapt(model, task.support, fast, RIDGE, strength=0.3)
    np.testing.assert_allclose(got["predictor.out.weight"].detach().numpy(), expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got["predictor.out.bias"].detach().numpy(), y.mean(0) - expected @ x.mean(0), atol=1e-10)
    rigid = ridge_adapt(model, task.support, fast, RIDGE, strength=1e12)
    np.testing.assert_allclose(rigid["predictor.out.weight"].detach().numpy(), w0, atol=1e-7)
    np.testing.assert_allclose(rigid["predictor.out.bias"].detach().numpy(), (y - x @ w0.T).mean(0), atol=1e-7)

    grads, _ = task_gradient(model, task, algorithm="fomaml", recipe=RIDGE)
    assert_encoder_gradient(model, grads, lambda: functional_loss(
        model, ridge_adapt(model, task.support, fast, RIDGE, strength=0.3), task.query))
    with pytest.raises(ConfigError, match="the ridge refit adapts the output layer"):
        RIDGE.replace(adapted_parameters=["predictor.dense"])


def test_a_lag_fitting_ridge_inner_loop_gets_the_gradient_at_its_delayed_refit(dsaml_task):
    """With `max_delay` the meta-training inner loop fits the support's lag too, and the meta-gradient
    is the query loss's at the delayed refit (a finite difference; the chosen lag is locally constant)."""
    from dsaml.adaptation.ridge import ridge_adapt
    from dsaml.adaptation.tensors import DELAY

    model, task = dsaml_task
    out = model.predictor.out
    fast = {"predictor.out.weight": out.weight, "predictor.out.bias": out.bias}
    lagged = RIDGE.replace(max_delay=3)
    refit = ridge_adapt(model, task.support, fast, lagged)
    assert refit[DELAY].tolist() == [1, 1]  # this support's lag: the delayed path is what is differentiated
    grads, _ = task_gradient(model, task, algorithm="fomaml", recipe=lagged)

    def query_loss():
        moved = ridge_adapt(model, task.support, fast, lagged)
        assert torch.equal(moved[DELAY], refit[DELAY])
        return functional_loss(model, moved, task.query)

    assert_encoder_gradient(model, grads, query_loss)


def test_base_loss_weight_adds_the_unadapted_query_gradient(dsaml_task):
    model, task = dsaml_task
    plain, _ = task_gradient(model, task, algorithm="fomaml")
    mixed, _ = task_gradient(model, task, algorithm="fomaml", base_loss_weight=0.5)
    params = dict(model.named_parameters())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(task.seed % 2**63)
        base = torch.autograd.grad(functional_loss(model, {}, task.query), list(params.values()), allow_unused=True)
    for (name, p), g in zip(params.items(), base):
        expected = plain[name] + 0.5 * (g if g is not None else torch.zeros_like(p))
        torch.testing.assert_close(mixed[name], expected, rtol=1e-7, atol=1e-10)


def test_ridge_level_share_and_per_dimension_strength_by_hand(dsaml_task):
    """The level share moves the curve's level by that share of the support's mean residual, each dimension
    solves its own ridge with its own strength, and `learn_adaptation_ridge` reads both from the model."""
    from dsaml.adaptation.ridge import ridge_adapt
    from dsaml.modeling.predictor_dsaml import RidgeSettings

    model, task = dsaml_task
    out = model.predictor.out
    fast = {"predictor.out.weight": out.weight, "predictor.out.bias": out.bias}
    x, y = support_readout(model, task)
    xc, yc = x - x.mean(0), y - y.mean(0)
    w0, b0 = out.weight.detach().numpy(), out.bias.detach().numpy()
    strengths, shares = (0.2, 5.0), (0.25, 0.0)
    got = ridge_adapt(model, task.support, fast, RIDGE, strength=strengths, level_share=shares)
    for d in range(2):
        lam = strengths[d] * np.trace(xc.T @ xc) / x.shape[1]
        w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ yc[:, d] + lam * w0[d])
        np.testing.assert_allclose(got["predictor.out.weight"][d].detach().numpy(), w, rtol=1e-8, atol=1e-10)
        base_level = x.mean(0) @ w0[d] + b0[d]
        level = base_level + shares[d] * (y[:, d].mean() - base_level)
        assert float(got["predictor.out.bias"][d].detach()) == pytest.approx(level - w @ x.mean(0), abs=1e-10)
    # share 0 keeps the base model's mean prediction on the support song exactly
    assert float((x @ got["predictor.out.weight"][1].detach().numpy()).mean() + got["predictor.out.bias"][1].detach()) == (
        pytest.approx(float((x @ w0[1]).mean() + b0[1]), abs=1e-10))

    model.config.learn_adaptation_ridge = True
    model.predictor.ridge = RidgeSettings().double()
    try:
        with torch.no_grad():
            model.predictor.ridge.log_strength.copy_(torch.tensor(strengths, dtype=torch.float64).log())
            model.predictor.ridge.level_logit.copy_(torch.tensor([np.log(1 / 3), -40.0]))  # 0.25, ~0
        learned = ridge_adapt(model, task.support, fast, RIDGE)
        for name in RIDGE_OUT:
            torch.testing.assert_close(learned[name], got[name], rtol=1e-9, atol=1e-12)
    finally:
        model.predictor.ridge, model.config.learn_adaptation_ridge = None, False


RIDGE_OUT = ("predictor.out.weight", "predictor.out.bias")
RIDGE = PersonalizationConfig(method="ridge", ridge_strength=0.3, adapted_parameters=["predictor.out"], steps=1,
                              learning_rate=0.01)


def test_learned_ridge_settings_get_the_exact_meta_gradient(dsaml_task):
    """FOMAML through the ridge solve gives the learned strength and level share (log / logit scales) the
    gradient of the query loss: equal to a central finite difference."""
    from dsaml.modeling.predictor_dsaml import RidgeSettings

    model, task = dsaml_task
    model.config.learn_adaptation_ridge = True
    model.predictor.ridge = RidgeSettings().double()
    model.predictor.ridge.reset(0.3, 0.6)
    try:
        assert model.predictor.ridge()[0].tolist() == pytest.approx([0.3, 0.3])
        assert model.predictor.ridge()[1].tolist() == pytest.approx([0.6, 0.6])
        grads, _ = task_gradient(model, task, algorithm="fomaml", recipe=RIDGE)
        for name in ("predictor.ridge.log_strength", "predictor.ridge.level_logit"):
            param = dict(model.named_parameters())[name]
            for d in range(2):
                losses = []
                for sign in (1, -1):
                    with torch.no_grad():
                        param[d] += sign * 1e-6
                    _, stats = task_gradient(model, task, algorithm="fomaml", recipe=RIDGE)
                    losses.append(stats["query_loss"])
                    with torch.no_grad():
                        param[d] -= sign * 1e-6
                numeric = (losses[0] - losses[1]) / 2e-6
                assert abs(numeric) > 1e-6  # the query loss does depend on every setting
                assert float(grads[name][d]) == pytest.approx(numeric, rel=1e-4, abs=1e-9)
    finally:
        model.predictor.ridge, model.config.learn_adaptation_ridge = None, False
