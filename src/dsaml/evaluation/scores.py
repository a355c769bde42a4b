"""Evaluation scores of dynamic emotion curves: RMSE, Pearson r and CCC, per sequence then averaged.

The reference code's protocol (`utils/score.py`): scores are computed per (song, dimension) over the song's
steps with POPULATION variances, then averaged over songs. Used by training-time validation, `dsaml evaluate`
and the `evaluate` metric modules in `dsaml/evaluation/metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dsaml.modeling.configuration_dsaml import LABEL_NAMES
from dsaml.modeling.losses_dsaml import agreement

# (dimension, RMSE key of `score_songs`) for the per-dimension and overall figures of a report
DIMENSIONS_SCORED = (("arousal", "arousal_rmse"), ("valence", "valence_rmse"), ("overall", "rmse"))


def curve_scores(prediction: Sequence[float], reference: Sequence[float]) -> dict[str, float]:
    """RMSE, Pearson r and CCC of one predicted curve against its reference (population statistics).

    Pearson r of a constant curve is undefined; it is reported as 0.0 (no linear agreement), as the reference
    code's epsilon does."""
    p = np.asarray(prediction, dtype=np.float64)
    t = np.asarray(reference, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 1 or p.size == 0:
        raise ValueError(f"prediction and reference must be equal-length non-empty curves, got {p.shape} and {t.shape}")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError("prediction and reference must not contain NaN or infinite values")
    dp, dt = p - p.mean(), t - t.mean()
    var_p, var_t, cov = (dp**2).mean(), (dt**2).mean(), (dp * dt).mean()
    ccc, pcc = agreement(p.mean(), t.mean(), var_p, var_t, cov, sqrt=np.sqrt)
    return {"rmse": float(np.sqrt(((p - t) ** 2).mean())), "pearson": float(pcc), "ccc": float(ccc)}


def score_songs(
    predictions: Sequence[np.ndarray], references: Sequence[np.ndarray]
) -> dict[str, float]:
    """Average per-song scores over songs for both dimensions.

    Args:
        predictions, references: one `[steps, 2]` array (arousal, valence) per song.
    Returns:
        `{"arousal_rmse", "arousal_pearson", "arousal_ccc", "valence_...", "rmse", "pearson", "ccc", "num_songs"}`
        where the unprefixed keys average the two dimensions.
    """
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need as many predictions as references (>0), got {len(predictions)} and {len(references)}")
    totals: dict[str, float] = {}
    for pred, ref in zip(predictions, references):
        pred, ref = np.asarray(pred), np.asarray(ref)
        for d, dim in enumerate(LABEL_NAMES):
            for key, value in curve_scores(pred[:, d], ref[:, d]).items():
                totals[f"{dim}_{key}"] = totals.get(f"{dim}_{key}", 0.0) + value
    result = {k: v / len(predictions) for k, v in totals.items()}
    for key in ("rmse", "pearson", "ccc"):
        result[key] = float(np.mean([result[f"{dim}_{key}"] for dim in LABEL_NAMES]))
    result["num_songs"] = len(predictions)
    return result
