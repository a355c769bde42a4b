"""`evaluate` metric modules for dynamic emotion curves, shipped inside the package and loaded offline by path.

`load("emotion_ccc")` == `evaluate.load(<this folder>/emotion_ccc/emotion_ccc.py)`. Modules: `dmer_scores` (all
scores), `emotion_rmse`, `emotion_pearson`, `emotion_ccc`; all wrap `dsaml.evaluation.scores.score_songs`.
"""

from __future__ import annotations

from pathlib import Path

METRICS = ("dmer_scores", "emotion_rmse", "emotion_pearson", "emotion_ccc")


def path(name: str) -> Path:
    """The module file of metric `name`."""
    if name not in METRICS:
        raise ValueError(f"unknown dsaml metric {name!r}; available: {', '.join(METRICS)}")
    return Path(__file__).resolve().parent / name / f"{name}.py"


def load(name: str, **kwargs):
    """`evaluate.load` of a dsaml metric module by path (works offline)."""
    import evaluate

    return evaluate.load(str(path(name)), **kwargs)


def combined(names=("emotion_rmse", "emotion_pearson", "emotion_ccc")):
    """`evaluate.combine` of several dsaml metric modules."""
    import evaluate

    return evaluate.combine([load(n) for n in names])


__all__ = ["METRICS", "combined", "load", "path"]
