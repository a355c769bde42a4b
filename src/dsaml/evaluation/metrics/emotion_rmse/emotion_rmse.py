"""Emotion RMSE: root-mean-square error of dynamic arousal/valence curves, per song then averaged.

An `evaluate` module over `dsaml.evaluation.metrics.song_scores` (inputs, citation and `dsaml.evaluation.scores.score_songs`, the
single implementation). Load offline by path: `dsaml.evaluation.metrics.load("emotion_rmse")`.
"""

import evaluate

from dsaml.evaluation.metrics.song_scores import SongScoreMetric, descriptions

_DESCRIPTION, _KWARGS_DESCRIPTION = descriptions(
    "Root-mean-square error of dynamic arousal/valence curves",
    "`rmse` (mean of arousal and valence), `arousal_rmse`, `valence_rmse`",
    "emotion_rmse",
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EmotionRmse(SongScoreMetric):
    _description = _DESCRIPTION
    _inputs_description = _KWARGS_DESCRIPTION
    keys = ('rmse', 'arousal_rmse', 'valence_rmse')
