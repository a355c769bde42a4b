"""Reference personalizations a one-song method must beat, and the share of the gap to the listener it closes.

Both references re-map the UNPERSONALIZED model's curve, per dimension, with the listener's labels of the same
support song(s) the personalized model adapts on:

- shift: y' = y + mean(labels - y) over the support steps (the listener's offset, nothing else);
- linear: y' = a + b * y, least squares on the support steps with the slope shrunk toward 1,
  b = (S_xy + k * S_xx) / ((1 + k) * S_xx) for shrinkage k (k = 0: ordinary least squares; k -> inf: the
  shift). A single song's slope is noisy; shrinking it keeps a flat or unrelated support curve from turning
  the prediction upside down.

`gap_closed` is the figure every personalization result is reported with: the share of the distance between
the unpersonalized model and the listener oracle (what the listener hears, noise-free) that a method removes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_SHRINKAGE", "fit_linear", "fit_shift", "gap_closed", "recalibrate"]

# Chosen on the synthetic:small validation listeners (never the test ones): see the README's accuracy section.
DEFAULT_SHRINKAGE = 1.0


def _stack(curves: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(c, dtype=np.float64).reshape(-1, 2) for c in curves], axis=0)


def fit_shift(predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> np.ndarray:
    """`[2, 2]` rows (a, b) per dimension with b = 1: the mean residual over every support step."""
    p, y = _stack(predictions), _stack(labels)
    return np.stack([(y - p).mean(axis=0), np.ones(2)], axis=1)


def fit_linear(predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray],
               shrinkage: float = DEFAULT_SHRINKAGE) -> np.ndarray:
    """`[2, 2]` rows (a, b) per dimension: least squares y ~ a + b * prediction, slope shrunk toward 1."""
    if shrinkage < 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
    p, y = _stack(predictions), _stack(labels)
    dp, dy = p - p.mean(axis=0), y - y.mean(axis=0)
    sxx, sxy = (dp * dp).sum(axis=0), (dp * dy).sum(axis=0)
    # a constant support prediction carries no slope information: keep b = 1 (the shift)
    slope = np.where(sxx > 1e-12, (sxy + shrinkage * sxx) / np.maximum((1 + shrinkage) * sxx, 1e-12), 1.0)
    return np.stack([y.mean(axis=0) - slope * p.mean(axis=0), slope], axis=1)


def recalibrate(prediction: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """Apply per-dimension (a, b) to a `[steps, 2]` curve."""
    return coefficients[:, 0] + coefficients[:, 1] * np.asarray(prediction, dtype=np.float64)


def gap_closed(before: float, method: float, oracle: float) -> float:
    """(before - method) / (before - oracle) for an error such as RMSE: 1 = as good as the listener oracle,
    0 = no better than the unpersonalized model, negative = worse. NaN when there is no gap to close."""
    gap = before - oracle
    return float((before - method) / gap) if abs(gap) > 1e-12 else float("nan")
