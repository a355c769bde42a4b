"""The output layer refitted in closed form to the average training listener (`fit_average_readout`).

Meta-training makes the output layer a good starting point for one listener's refit, not a good prediction on
its own: on `synthetic:small` the main job's read-out features predict the averaged valence of the validation
songs at r = 0.59 through a least-squares layer, while the meta-learned layer gets r = 0.18 (README, method).
The base loss of a short meta-training stage moves that layer too little to close this. So before a stage's
first step, the layer is refitted by ridge regression on what it reads (every window of every training row,
as the ridge inner loop sees a support song) against the rows' labels: over all listeners of all training
songs, that is the average listener. The unpersonalized model then predicts the crowd, and each listener's
refit starts from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from dsaml.adaptation.ridge import readout_inputs, ridge_penalty
from dsaml.data.batches import support_batch

# The ridge of the fit, relative to the features' mean variance (`ridge_penalty`): small enough to leave a
# well-determined least-squares fit alone (tens of thousands of rows, a few dozen features), large enough to give
# a constant or duplicated feature a unique solution.
AVERAGE_READOUT_RIDGE = 1e-3



@torch.no_grad()
def readout_statistics(model, store, rows: Sequence[int], window_steps: int) -> dict[str, torch.Tensor]:
    """Sums over every step of every window of `rows` of `store`: `n`, `x` [d], `y` [2], `yy` [2], `xx` [d, d],
    `xy` [d, 2] of the output layer's input x and the labels y (float64, zeros for no rows: sums of shares of the
    rows add up to the sums of all of them). A song is encoded once for all its listeners."""
    out = model.predictor.out
    d, k = out.in_features, out.out_features
    shapes = {"n": (), "x": (d,), "y": (k,), "yy": (k,), "xx": (d, d), "xy": (d, k)}
    sums = {name: torch.zeros(shape, dtype=torch.float64, device=out.weight.device) for name, shape in shapes.items()}
    was_training = model.training
    model.eval()
    cache: dict[tuple, torch.Tensor] = {}
    for row in rows:
        song = store.songs([row])[0]
        batch = {name: value.to(out.weight.device) for name, value in support_batch([song], window_steps).items()}
        mask = batch["attention_mask"].bool()
        key = (song.song_id, song.start_step, song.num_steps)
        if key not in cache:
            cache[key] = readout_inputs(model, batch)[mask].double()
        x, y = cache[key], batch["labels"][mask].double()
        for name, value in (("n", len(x)), ("x", x.sum(0)), ("y", y.sum(0)), ("yy", (y * y).sum(0)),
                            ("xx", x.T @ x), ("xy", x.T @ y)):
            sums[name] += value
    model.train(was_training)
    return sums


def solve_average_readout(stats: dict[str, torch.Tensor], ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [2, d], bias [2]) of the ridge fit, the intercept unpenalized, with the ridge inner loop's
    scale-free penalty (`dsaml.adaptation.ridge.ridge_penalty`)."""
    n = stats["n"].clamp_min(1.0)
    x_mean, y_mean = stats["x"] / n, stats["y"] / n
    gram = stats["xx"] - n * torch.outer(x_mean, x_mean)
    cross = stats["xy"] - n * torch.outer(x_mean, y_mean)
    lam = ridge_penalty(gram, ridge)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    weight = torch.linalg.solve(gram + lam * eye, cross).T
    return weight, y_mean - weight @ x_mean


def readout_rmse(stats: dict[str, torch.Tensor], weight: torch.Tensor, bias: torch.Tensor) -> list[float]:
    """Per-dimension RMSE of y ~ weight x + bias over the summed steps, from the sums alone."""
    w, b, n = weight.double(), bias.double(), stats["n"]
    sse = (stats["yy"] - 2 * (w * stats["xy"].T).sum(1) - 2 * b * stats["y"]
           + torch.einsum("kd,de,ke->k", w, stats["xx"], w) + 2 * b * (w @ stats["x"]) + n * b * b)
    return (sse.clamp_min(0) / n).sqrt().tolist()


def fit_average_readout(model, store, rows: Sequence[int], window_steps: int, ridge: float = AVERAGE_READOUT_RIDGE,
                        reduce: Callable[[dict], dict] | None = None) -> dict[str, list[float]]:
    """Replace `model.predictor.out` by the ridge fit on `rows`; returns its per-dimension RMSE on them before and
    after (arousal, valence). In a multi-process run each process passes its share of the rows and `reduce` sums
    the statistics across processes, so every process solves the same system."""
    stats = readout_statistics(model, store, rows, window_steps)
    if reduce is not None:
        stats = reduce(stats)
    if float(stats["n"]) < 2:
        raise ValueError("fit_average_readout needs labelled training steps; the training rows have none")
    out = model.predictor.out
    try:
        weight, bias = solve_average_readout(stats, ridge)
    except torch.linalg.LinAlgError:
        weight = bias = None
    if weight is None or not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise ValueError(f"the average read-out has no unique solution at ridge {ridge} (some read-out features "
                         "are constant or duplicated): fit it with a ridge > 0")
    report = {"before": readout_rmse(stats, out.weight.detach(), out.bias.detach()),
              "after": readout_rmse(stats, weight, bias)}
    with torch.no_grad():
        out.weight.copy_(weight.to(out.weight.dtype))
        out.bias.copy_(bias.to(out.bias.dtype))
    return report
