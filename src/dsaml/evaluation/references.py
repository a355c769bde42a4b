"""Reference curves a dataset knows beside its listeners' own annotations: what personalization is measured by.

The synthetic set knows what a listener really hears (its generator is the ground truth): the population emotion
(the known emotion function, no listener) and the listener oracle (the listener's own perception without the
hand's noise). VGMIDI knows each piece's crowd: the average of the OTHER listeners who rated the piece (the
listener left out) is what a perfect non-personal model could know. Other datasets have none, and
`references_for` returns None. Every reference gives `curves(songs)`: name -> one `[steps, 2]` curve per song,
cut to the song's labelled steps like its annotation (`dsaml.evaluation.protocol.reference_points` scores them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dsaml.data.datasets import dataset_metadata, load_dmer
from dsaml.datasets_scripts.synthetic.synthetic import GENERATOR_VERSION, SyntheticSpec, reference_curves

__all__ = ["CrowdReferences", "ListenerReferences", "references_for"]


@dataclass
class ListenerReferences:
    """The synthetic set's `population` and `oracle` curves."""

    population_curves: dict  # song_id -> [frames, 2]
    oracle_curves: dict  # (annotator, song_id) -> [frames, 2]

    def population(self, song_id: str, start_step: int, num_steps: int) -> np.ndarray:
        return self.population_curves[song_id][start_step : start_step + num_steps]

    def oracle(self, annotator: str, song_id: str, start_step: int, num_steps: int) -> np.ndarray:
        return self.oracle_curves[(annotator, song_id)][start_step : start_step + num_steps]

    def curves(self, songs: Sequence) -> dict[str, list[np.ndarray]]:
        return {"population": [self.population(s.song_id, s.start_step, s.num_steps) for s in songs],
                "oracle": [self.oracle(s.annotator, s.song_id, s.start_step, s.num_steps) for s in songs]}


@dataclass
class CrowdReferences:
    """The `crowd` curve: a piece's average over its other listeners, from the average over all of them.

    With the mean `m` of `n` annotations that include the listener's own `x`, the others' mean is
    `(n m - x) / (n - 1)`: exact, and it needs no other listener's rows (VGMIDI's `dmer` config averages every
    usable annotation of a piece, also those of listeners `pdmer` leaves out)."""

    averages: dict  # song_id -> [frames, 2], the mean over all `counts[song_id]` annotations
    counts: dict  # song_id -> number of annotations averaged

    def others(self, song) -> np.ndarray:
        """The other listeners' mean curve over `song`'s labelled steps (an `AlignedSong` of one listener)."""
        n = int(self.counts[song.song_id])
        if n < 2:
            raise ValueError(f"song {song.song_id!r}: {n} annotation(s), no other listener to average")
        mean = np.asarray(self.averages[song.song_id], dtype=np.float64)[song.start_step : song.start_step
                                                                         + song.num_steps]
        own = np.asarray(song.labels, dtype=np.float64)
        return ((n * mean - own) / (n - 1)).astype(np.float32)

    def curves(self, songs: Sequence) -> dict[str, list[np.ndarray]]:
        return {"crowd": [self.others(s) for s in songs]}


def references_for(root: str | os.PathLike) -> ListenerReferences | CrowdReferences | None:
    """The references of a dataset folder: the synthetic generator's (from its build report), VGMIDI's crowd
    (from its `dmer` config), else None."""
    meta = dataset_metadata(root)
    if meta.get("dataset") == "vgmidi":
        return crowd_references(root) if "dmer" in meta.get("configs", ()) else None
    if meta.get("dataset") != "synthetic":
        return None

    if str(meta.get("generator_version")) != GENERATOR_VERSION:
        return None  # another generator version: its listeners are not this code's
    options = meta["options"]
    spec = SyntheticSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in options["spec"].items()})
    population, oracle = reference_curves(spec, int(options["seed"]))
    return ListenerReferences(population, oracle)


def crowd_references(root: str | os.PathLike) -> CrowdReferences:
    """Every piece's crowd average and annotation count from a VGMIDI folder's `dmer` config."""
    splits = load_dmer(root)
    averages, counts = {}, {}
    for rows in splits.values():
        for row in rows:
            averages[row["song_id"]] = np.stack([row["arousal"], row["valence"]], axis=-1)
            counts[row["song_id"]] = json.loads(row["annotator_info"])["annotations"]
    return CrowdReferences(averages, counts)
