"""How far personalization should move, chosen on validation listeners: the recipe's `share` and `max_delay`.

The inner loop is meta-learned on training listeners, whose songs the model was trained on. How much one song
says about a listener's other songs is a property of the data that those listeners can misjudge: on VGMIDI a
listener's offset on one piece does not carry over to the next (README), on the synthetic set most of it does.
So after training, for every validation task (support song, query songs), the query predictions of the base
model `b` and of the personalized model `f` (the inner loop as meta-trained)
are blended, `b + a * (f - b)`, for each share `a` of `SHARE_GRID`; the share with the lowest mean over
listeners of their query RMSE (a listener's tasks averaged first, as `dsaml.evaluation.summary.summarize` does) is kept
per dimension. a = 0 is the unpersonalized model, a = 1 the inner loop as meta-trained.

When the inner loop adapts only the predictor's linear read-out, the blend of the curves is the curve of the
blended weights (`dsaml.personalization.shrinkage.fold_per_dimension`), so two predictions per task give every share exactly,
one per dimension. Any other adapted set gets one share for both dimensions, each share scored by predicting
with the blended weights.

The ridge refit can also fit the listener's reaction lag (`PersonalizationConfig.max_delay`): the share then blends
the delayed curves (a share of 0 is the undelayed base model), and the longest lag allowed is chosen from
`DELAY_GRID` with the share, by the same validation listeners: the lag and share with the lowest mean RMSE
over both dimensions (ties: the shorter lag).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from dsaml.adaptation.config import personalization_config
from dsaml.adaptation.tensors import DELAY
from dsaml.inference.songs import predict_songs, song_on
from dsaml.personalization.personalize import personalize_song
from dsaml.personalization.shrinkage import predictions_with, reads_out_linearly, shrink

__all__ = ["DELAY_GRID", "SHARE_GRID", "ShareErrors", "blended_rmse", "calibrate_share", "choose_share",
           "share_errors"]

SHARE_GRID = tuple(round(0.05 * i, 2) for i in range(31))  # 0 .. 1.5: also a step larger than meta-trained
DELAY_GRID = (0, 2, 4, 6)  # the longest reaction lag, in steps: none, 1 s, 2 s, 3 s

# (annotator, query RMSE [len(SHARE_GRID), 2] for arousal and valence, one share per dimension?)
ShareErrors = tuple[str, np.ndarray, bool]


def blended_rmse(base: Sequence[np.ndarray], adapted: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                 shares: Sequence[float] = SHARE_GRID) -> np.ndarray:
    """[len(shares), 2]: the per-song RMSE of `base + a * (adapted - base)`, averaged over songs (as
    `dsaml.evaluation.scores.score_songs`), exactly: per song and dimension the mean squared error is a quadratic in a."""
    a = np.asarray(shares, dtype=np.float64)[:, None]
    total = np.zeros((a.shape[0], 2))
    for b, f, y in zip(base, adapted, labels):
        b, f, y = (np.asarray(x, dtype=np.float64) for x in (b, f, y))
        e, d = b - y, f - b
        mse = (e * e).mean(0) + 2 * a * (e * d).mean(0) + a * a * (d * d).mean(0)
        total += np.sqrt(np.maximum(mse, 0.0))
    return total / len(base)


def share_errors(model, store, tasks, *, device: torch.device | str | None = None, progress: bool = False,
                 delays: Sequence[int | None] = (None,)) -> dict[int | None, list[ShareErrors]]:
    """For each longest reaction lag of `delays` (None: the model's own), for each task: its annotator and the
    query RMSE of every share of `SHARE_GRID` (module docstring). The inner loop runs as `dsaml evaluate` runs it
    (the task's seed), with the model's own share ignored; a task's unpersonalized curves are predicted once for
    every lag."""
    from tqdm.auto import tqdm

    config = model.config
    window, hop = config.window_steps, config.hop_steps
    was_training = model.training
    out: dict[int | None, list[ShareErrors]] = {max_delay: [] for max_delay in delays}
    for task in tqdm(tasks, desc="calibrating the adaptation share", disable=not progress, leave=False):
        query = [song_on(s, device) for s in store.songs(task.query)]
        support = [song_on(s, device) for s in store.songs(task.support)]
        labels = [s.labels.numpy() for s in query]
        base = predict_songs(model, query, window, hop)
        for max_delay in delays:
            with torch.enable_grad():
                result = personalize_song(model, support, user=task.annotator, seed=task.seed, share=(1.0, 1.0),
                                          max_delay=max_delay)
            linear = reads_out_linearly(model, result.fast_weights)
            delay = result.fast_weights.get(DELAY)
            if linear:
                delayed = delay is not None and bool(delay.any())
                # shares above 0 blend the delayed curves; 0 is the undelayed base
                start = predictions_with(model, {DELAY: delay}, query) if delayed else base
                errors = blended_rmse(start, predict_songs(result.model, query, window, hop), labels)
                if delayed:
                    errors[0] = blended_rmse(base, base, labels, shares=(0.0,))[0]
            else:  # one share for every weight: predict with each blend, as `personalize_song` would shrink
                errors = np.concatenate([
                    blended_rmse(base, predictions_with(model, shrink(model, result.fast_weights, (a, a)), query),
                                 labels, shares=(1.0,)) for a in SHARE_GRID])
            out[max_delay].append((task.annotator, errors, linear))
            del result
    model.train(was_training)
    return out


def choose_share(errors: Sequence[ShareErrors]) -> tuple[tuple[float, float], dict]:
    """The (arousal, valence) share of `SHARE_GRID` with the lowest mean over annotators of their query RMSE
    (one share for both when the adapted weights do not read out linearly); ties go to the share nearest 1, the
    inner loop as meta-trained. Also what each choice scored."""
    if not errors:
        raise ValueError("calibrating the adaptation share needs at least one validation task")
    by_annotator: dict[str, list[np.ndarray]] = {}
    for annotator, rmse, _ in errors:
        by_annotator.setdefault(annotator, []).append(rmse)
    per_annotator = np.stack([np.mean(v, axis=0) for v in by_annotator.values()])  # [annotators, grid, 2]
    mean = per_annotator.mean(axis=0)
    per_dimension = all(linear for _, _, linear in errors)
    grid = np.asarray(SHARE_GRID)
    pick = (lambda score: int(min(range(len(grid)), key=lambda i: (score[i], abs(grid[i] - 1.0)))))
    if per_dimension:
        chosen = [pick(mean[:, d]) for d in range(2)]
    else:
        chosen = [pick(mean.mean(axis=1))] * 2
    at = (lambda share: int(np.flatnonzero(np.isclose(grid, share))[0]))
    info = {"listeners": len(by_annotator), "tasks": len(errors), "per_dimension": per_dimension}
    for d, dim in enumerate(("arousal", "valence")):
        worse = per_annotator[:, chosen[d], d] > per_annotator[:, at(0.0), d] + 0.01
        info[dim] = {"share": float(grid[chosen[d]]), "rmse_calibrated": float(mean[chosen[d], d]),
                     "rmse_meta_trained": float(mean[at(1.0), d]), "rmse_unpersonalized": float(mean[at(0.0), d]),
                     "listeners_worse_by_0.01": int(worse.sum())}
    return (float(grid[chosen[0]]), float(grid[chosen[1]])), info


def calibrate_share(model, store, tasks, *, device=None, progress: bool = False,
                    gather: Callable[[list], list] | None = None,
                    delays: Sequence[int] | None = None) -> tuple[tuple[float, float], int, dict]:
    """(share, longest reaction lag, what each scored): `choose_share` on `share_errors` of `tasks` for each
    longest lag of `delays` (default: those of `DELAY_GRID` shorter than a window for a ridge inner loop, else
    none), the pair with the lowest mean RMSE over both dimensions kept (ties: the shorter lag). `gather` collects every process's errors when
    each process scored its share of the tasks (e.g. `accelerate.utils.gather_object`)."""
    if delays is None:  # lags are fitted by the ridge refit, within a window
        ridge = personalization_config(model).method == "ridge"
        delays = [d for d in DELAY_GRID if d < model.config.window_steps] if ridge else (0,)
    best = None
    scored = {}
    by_delay = share_errors(model, store, tasks, device=device, progress=progress,
                            delays=sorted(int(d) for d in delays))
    for max_delay, errors in by_delay.items():
        if gather is not None:
            errors = gather(errors)
        share, info = choose_share(errors)
        score = (info["arousal"]["rmse_calibrated"] + info["valence"]["rmse_calibrated"]) / 2
        scored[max_delay] = {"share": list(share), "rmse_calibrated": score}
        if best is None or score < best[0]:
            best = (score, share, max_delay, info)
    _, share, max_delay, info = best
    return share, max_delay, dict(info, max_delay=max_delay, delays=scored)
