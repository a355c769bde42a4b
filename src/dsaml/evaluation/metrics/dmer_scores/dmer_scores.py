"""DMER scores: RMSE, Pearson r and CCC of dynamic arousal/valence curves, per song then averaged.

An `evaluate` module over `dsaml.evaluation.metrics.song_scores` (inputs, citation and `dsaml.evaluation.scores.score_songs`, the
single implementation). Load offline by path: `dsaml.evaluation.metrics.load("dmer_scores")`.
"""

import evaluate

from dsaml.evaluation.metrics.song_scores import SongScoreMetric, descriptions

_DESCRIPTION, _KWARGS_DESCRIPTION = descriptions(
    "RMSE, Pearson r and CCC of dynamic arousal/valence curves",
    "`arousal_rmse`, `arousal_pearson`, `arousal_ccc`, `valence_rmse`, `valence_pearson`, `valence_ccc`, `rmse`, `pearson`, `ccc` (mean of the two dimensions) and `num_songs`",
    "dmer_scores",
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DmerScores(SongScoreMetric):
    _description = _DESCRIPTION
    _inputs_description = _KWARGS_DESCRIPTION
    keys = None
