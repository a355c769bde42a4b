"""Emotion CCC: concordance correlation coefficient (population variances) of dynamic arousal/valence curves, per song then averaged.

A thin `evaluate` wrapper around `dsaml.scores.score_songs` (the single implementation, also used by training and
`dsaml evaluate`): scores are computed per (song, dimension) with POPULATION variances, then averaged over songs,
as in the DSAML reference code. Load offline by path: `dsaml.metrics.load("emotion_ccc")`.
"""

import datasets
import evaluate
import numpy as np

from dsaml.scores import score_songs

_DESCRIPTION = """Concordance correlation coefficient (population variances) of dynamic arousal/valence curves, per song then averaged. Each prediction and reference is one song: a list of
[arousal, valence] pairs, one per 0.5 s step. Returns ccc, arousal_ccc, valence_ccc."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of songs, each a list of [arousal, valence] steps.
    references: list of songs of the same lengths.
Returns:
    `ccc` (mean of arousal and valence), `arousal_ccc`, `valence_ccc`.
Examples:
    >>> import dsaml.metrics
    >>> metric = dsaml.metrics.load("emotion_ccc")
    >>> metric.compute(predictions=[[[0.1, 0.2], [0.3, 0.1]]], references=[[[0.0, 0.2], [0.4, 0.0]]])  # doctest: +SKIP
"""

_CITATION = """@inproceedings{dsaml2025,
  title={Personalized Dynamic Music Emotion Recognition with Dual-Scale Attention-Based Meta-Learning},
  booktitle={Proceedings of the AAAI Conference on Artificial Intelligence},
  year={2025},
  note={arXiv:2412.19200}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EmotionCcc(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                }
            ),
        )

    def _compute(self, predictions, references):
        scores = score_songs([np.asarray(p, dtype=np.float64) for p in predictions],
                             [np.asarray(r, dtype=np.float64) for r in references])
        return {k: scores[k] for k in ("ccc", "arousal_ccc", "valence_ccc")}
