"""Emotion CCC: concordance correlation coefficient (population variances) of dynamic arousal/valence curves, per song then averaged.

An `evaluate` module over `dsaml.evaluation.metrics.song_scores` (inputs, citation and `dsaml.evaluation.scores.score_songs`, the
single implementation). Load offline by path: `dsaml.evaluation.metrics.load("emotion_ccc")`.
"""

import evaluate

from dsaml.evaluation.metrics.song_scores import SongScoreMetric, descriptions

_DESCRIPTION, _KWARGS_DESCRIPTION = descriptions(
    "Concordance correlation coefficient (population variances) of dynamic arousal/valence curves",
    "`ccc` (mean of arousal and valence), `arousal_ccc`, `valence_ccc`",
    "emotion_ccc",
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EmotionCcc(SongScoreMetric):
    _description = _DESCRIPTION
    _inputs_description = _KWARGS_DESCRIPTION
    keys = ('ccc', 'arousal_ccc', 'valence_ccc')
