"""What a listener really hears, where a dataset knows it: the reference curves personalization is measured by.

Only the synthetic set knows it (its generator is the ground truth): the population emotion (the known emotion
function, no listener) and the listener oracle (the listener's own perception without the hand's noise). For
real datasets there is no oracle, and `references_for` returns None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["ListenerReferences", "references_for"]


@dataclass
class ListenerReferences:
    """`[steps, 2]` reference curves, cut to a song's labelled steps like its annotation."""

    population_curves: dict  # song_id -> [frames, 2]
    oracle_curves: dict  # (annotator, song_id) -> [frames, 2]

    def population(self, song_id: str, start_step: int, num_steps: int) -> np.ndarray:
        return self.population_curves[song_id][start_step : start_step + num_steps]

    def oracle(self, annotator: str, song_id: str, start_step: int, num_steps: int) -> np.ndarray:
        return self.oracle_curves[(annotator, song_id)][start_step : start_step + num_steps]


def references_for(root: str | os.PathLike) -> ListenerReferences | None:
    """The references of a dataset folder built by the synthetic generator (from its build report), else None."""
    from dsaml.data import dataset_metadata

    meta = dataset_metadata(root)
    if meta.get("dataset") != "synthetic":
        return None
    from dsaml.datasets_scripts.synthetic import GENERATOR_VERSION, SyntheticSpec, reference_curves

    if str(meta.get("generator_version")) != GENERATOR_VERSION:
        return None  # another generator version: its listeners are not this code's
    options = meta["options"]
    spec = SyntheticSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in options["spec"].items()})
    population, oracle = reference_curves(spec, int(options["seed"]))
    return ListenerReferences(population, oracle)
