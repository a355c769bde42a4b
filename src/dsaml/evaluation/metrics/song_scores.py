"""The body every dsaml `evaluate` metric module shares: inputs (one song = a list of [arousal, valence] steps),
citation, and `_compute` through `dsaml.evaluation.scores.score_songs` (the single implementation, also used by training
and `dsaml evaluate`: per (song, dimension) with POPULATION variances, then averaged over songs).

A module defines only its description and `keys` (the scores it returns; None = all of them).
"""

from __future__ import annotations

import abc

import datasets
import evaluate
import numpy as np

from dsaml.evaluation.scores import score_songs

CITATION = """@inproceedings{dsaml2025,
  title={Personalized Dynamic Music Emotion Recognition with Dual-Scale Attention-Based Meta-Learning},
  booktitle={Proceedings of the AAAI Conference on Artificial Intelligence},
  year={2025},
  note={arXiv:2412.19200}
}"""


def descriptions(summary: str, returns: str, name: str) -> tuple[str, str]:
    """(description, inputs description) of a metric module."""
    description = (f"{summary}, per song then averaged. Each prediction and reference is one song: a list of\n"
                   f"[arousal, valence] pairs, one per 0.5 s step. Returns {returns}.")
    kwargs = f"""
Args:
    predictions: list of songs, each a list of [arousal, valence] steps.
    references: list of songs of the same lengths.
Returns:
    {returns}.
Examples:
    >>> import dsaml.evaluation.metrics
    >>> metric = dsaml.evaluation.metrics.load("{name}")
    >>> metric.compute(predictions=[[[0.1, 0.2], [0.3, 0.1]]], references=[[[0.0, 0.2], [0.4, 0.0]]])  # doctest: +SKIP
"""
    return description, kwargs


class SongScoreMetric(evaluate.Metric, metaclass=abc.ABCMeta):
    """Abstract on purpose: `evaluate.load` takes the first concrete Metric class it finds in a module, which
    must be the module's own class, not this base it imports."""

    _description = ""
    _inputs_description = ""

    @property
    @abc.abstractmethod
    def keys(self) -> tuple[str, ...] | None:
        """The scores `compute` returns (keys of `score_songs`), or None for all of them."""

    def _info(self):
        return evaluate.MetricInfo(
            description=self._description,
            citation=CITATION,
            inputs_description=self._inputs_description,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                "references": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
            }),
        )

    def _compute(self, predictions, references):
        scores = score_songs([np.asarray(p, dtype=np.float64) for p in predictions],
                             [np.asarray(r, dtype=np.float64) for r in references])
        return scores if self.keys is None else {k: scores[k] for k in self.keys}
