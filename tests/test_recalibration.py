"""The reference personalizations (shift, shrunk linear recalibration) and the gap-closed share, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dsaml.evaluation.recalibration import fit_linear, fit_shift, gap_closed, recalibrate


def test_shift_and_linear_by_hand():
    pred = np.array([[0.0, 0.1], [0.2, 0.3], [0.4, 0.2], [0.6, 0.0]])
    labels = np.array([[0.1, -0.1], [0.5, -0.3], [0.9, -0.2], [1.3, 0.0]])  # arousal = 0.1 + 2 p; valence = -p
    shift = fit_shift([pred], [labels])
    np.testing.assert_allclose(shift, [[0.4, 1.0], [-0.3, 1.0]])  # mean(labels - pred)
    ols = fit_linear([pred], [labels], shrinkage=0.0)
    np.testing.assert_allclose(ols, [[0.1, 2.0], [0.0, -1.0]], atol=1e-12)
    # shrinkage 1: the slope halfway between least squares and 1, the intercept through the means
    half = fit_linear([pred], [labels], shrinkage=1.0)
    np.testing.assert_allclose(half[:, 1], [1.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(half[:, 0], labels.mean(0) - half[:, 1] * pred.mean(0), atol=1e-12)
    np.testing.assert_allclose(recalibrate(pred, ols), labels, atol=1e-12)
    # a very strong shrinkage is the shift
    np.testing.assert_allclose(fit_linear([pred], [labels], shrinkage=1e9), shift, atol=1e-6)


def test_constant_support_prediction_keeps_the_slope():
    pred = np.zeros((5, 2))
    labels = np.tile([[0.3, -0.2]], (5, 1)) + np.arange(5)[:, None] * 0.01
    np.testing.assert_allclose(fit_linear([pred], [labels], 0.0), fit_shift([pred], [labels]))
    with pytest.raises(ValueError, match="shrinkage"):
        fit_linear([pred], [labels], -1.0)


def test_gap_closed():
    assert gap_closed(0.5, 0.3, 0.1) == pytest.approx(0.5)
    assert gap_closed(0.5, 0.6, 0.1) == pytest.approx(-0.25)
    assert gap_closed(0.5, 0.1, 0.1) == pytest.approx(1.0)
    assert np.isnan(gap_closed(0.1, 0.1, 0.1))
