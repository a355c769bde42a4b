"""The output layer refitted to the average training listener (`dsaml.training.average_readout`): the closed form against
numpy, the RMSE read from the sums against the direct one, and the fit on the tiny set's training rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsaml.training.average_readout import (
    fit_average_readout,
    readout_rmse,
    readout_statistics,
    solve_average_readout,
)


def sums(x: np.ndarray, y: np.ndarray) -> dict[str, torch.Tensor]:
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    return {"n": torch.tensor(float(len(x))), "x": x.sum(0), "y": y.sum(0), "yy": (y * y).sum(0),
            "xx": x.T @ x, "xy": x.T @ y}


def test_the_solve_is_ridge_regression_with_a_free_intercept():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * [1.0, 2.0, 0.5, 3.0, 1.0] + 4.0  # off-centre, unequal scales
    y = x @ rng.normal(size=(5, 2)) + [0.3, -0.7] + 0.1 * rng.normal(size=(200, 2))
    weight, bias = solve_average_readout(sums(x, y), ridge=0.0)
    expected, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)
    np.testing.assert_allclose(weight.numpy(), expected[:5].T, atol=1e-8)
    np.testing.assert_allclose(bias.numpy(), expected[5], atol=1e-8)
    # by hand: centred normal equations with lam = ridge * trace / d; the intercept is never shrunk
    xc, yc = x - x.mean(0), y - y.mean(0)
    lam = 0.5 * np.trace(xc.T @ xc) / 5
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(5), xc.T @ yc).T
    weight, bias = solve_average_readout(sums(x, y), ridge=0.5)
    np.testing.assert_allclose(weight.numpy(), w, atol=1e-8)
    np.testing.assert_allclose(bias.numpy(), y.mean(0) - w @ x.mean(0), atol=1e-8)
    # an overwhelming penalty leaves the mean: a flat prediction at the labels' mean
    weight, bias = solve_average_readout(sums(x, y), ridge=1e9)
    assert np.abs(weight.numpy()).max() < 1e-6
    np.testing.assert_allclose(bias.numpy(), y.mean(0), atol=1e-5)


def test_the_rmse_from_the_sums_is_the_rmse_of_the_predictions():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    w, b = rng.normal(size=(2, 3)), rng.normal(size=2)
    direct = np.sqrt(((y - x @ w.T - b) ** 2).mean(0))
    np.testing.assert_allclose(readout_rmse(sums(x, y), torch.tensor(w), torch.tensor(b)), direct, rtol=1e-10)


def test_the_fit_on_training_rows_is_their_least_squares_layer(trained_tiny, synthetic_tiny):
    """On the tiny set's training rows: the statistics encode each song once but count every listener's labels,
    the refit layer equals numpy's fit on every row's read-out (computed row by row here), its RMSE on those rows
    drops, and the rest of the model is untouched."""
    from dsaml.data.batches import support_batch
    from dsaml.data.datasets import load_pdmer
    from dsaml.data.song_store import SongStore
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition

    model = DSAMLForDynamicEmotionRecognition.from_pretrained(trained_tiny).eval()
    rows = load_pdmer(synthetic_tiny, "pdmer_flat", split="train")
    store = SongStore(rows, synthetic_tiny, model.config)
    chosen = list(range(min(len(rows), 12)))
    window = model.config.window_steps
    xs, ys = [], []
    with torch.no_grad():
        for row in chosen:
            batch = support_batch(store.songs([row]), window)
            mask = batch["attention_mask"].bool()
            hidden = model.dsaml.encode(batch["input_features"], batch["attention_mask"])[0]
            xs.append(model.predictor.readout_features(hidden, batch["attention_mask"])[mask].double().numpy())
            ys.append(batch["labels"][mask].double().numpy())
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert len({rows[i]["song_id"] for i in chosen}) < len(chosen)  # some songs have several listeners here
    stats = readout_statistics(model, store, chosen, window)
    assert int(stats["n"]) == len(x)
    np.testing.assert_allclose(stats["xy"].numpy(), x.T @ y, rtol=1e-6, atol=1e-6)

    # a multi-process run: each process sums its share of the rows, the shares add up to the whole
    shares = [readout_statistics(model, store, chosen[i::2], window) for i in (0, 1)]
    for name, value in stats.items():
        torch.testing.assert_close(shares[0][name] + shares[1][name], value)
    sharded = DSAMLForDynamicEmotionRecognition.from_pretrained(trained_tiny).eval()
    fit_average_readout(sharded, store, chosen[0::2], window, ridge=0.0,
                        reduce=lambda mine: {k: v + shares[1][k] for k, v in mine.items()})

    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = fit_average_readout(model, store, chosen, window, ridge=0.0)
    expected, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)
    np.testing.assert_allclose(model.predictor.out.weight.detach().numpy(), expected[:-1].T, atol=1e-4)
    np.testing.assert_allclose(model.predictor.out.bias.detach().numpy(), expected[-1], atol=1e-4)
    direct = np.sqrt(((y - np.c_[x, np.ones(len(x))] @ expected) ** 2).mean(0))
    np.testing.assert_allclose(report["after"], direct, rtol=1e-5)
    assert all(a < b for a, b in zip(report["after"], report["before"]))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"predictor.out.weight", "predictor.out.bias"}
    torch.testing.assert_close(sharded.predictor.out.weight, model.predictor.out.weight)
    torch.testing.assert_close(sharded.predictor.out.bias, model.predictor.out.bias)


def test_a_read_out_without_a_unique_fit_is_a_clear_error(trained_tiny, monkeypatch):
    """A read-out feature that never varies leaves ridge 0 without a unique solution: a one-line error naming the
    setting, and the model keeps its layer."""
    import dsaml.training.average_readout as average_readout
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition

    model = DSAMLForDynamicEmotionRecognition.from_pretrained(trained_tiny)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, model.predictor.out.in_features))
    x[:, 0] = 0.0  # a dead unit
    monkeypatch.setattr(average_readout, "readout_statistics", lambda *args: sums(x, rng.normal(size=(40, 2))))
    layer = model.predictor.out.weight.detach().clone()
    with pytest.raises(ValueError, match=r"no unique solution at ridge 0.0 .*ridge > 0"):
        fit_average_readout(model, None, [], 20, ridge=0.0)
    assert torch.equal(model.predictor.out.weight, layer)
    fit_average_readout(model, None, [], 20)  # the fixed penalty makes it unique
    assert torch.isfinite(model.predictor.out.weight).all() and model.predictor.out.weight[:, 0].abs().max() < 1e-9
