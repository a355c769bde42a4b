"""Emotion Pearson r: Pearson correlation (population statistics) of dynamic arousal/valence curves, per song then averaged.

An `evaluate` module over `dsaml.evaluation.metrics.song_scores` (inputs, citation and `dsaml.evaluation.scores.score_songs`, the
single implementation). Load offline by path: `dsaml.evaluation.metrics.load("emotion_pearson")`.
"""

import evaluate

from dsaml.evaluation.metrics.song_scores import SongScoreMetric, descriptions

_DESCRIPTION, _KWARGS_DESCRIPTION = descriptions(
    "Pearson correlation (population statistics) of dynamic arousal/valence curves",
    "`pearson` (mean of arousal and valence), `arousal_pearson`, `valence_pearson`",
    "emotion_pearson",
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EmotionPearson(SongScoreMetric):
    _description = _DESCRIPTION
    _inputs_description = _KWARGS_DESCRIPTION
    keys = ('pearson', 'arousal_pearson', 'valence_pearson')
