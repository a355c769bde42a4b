"""Held-out pieces as contiguous blocks along the annotation tool's ring of pieces, so listeners stay whole.

A VGMIDI listener rated two pieces, mostly neighbours in the tool's order (piece<N> and piece<N+1> of one
annotation file): the graph whose edges are listeners is close to one ring per file. A listener is usable in a
partition only when BOTH their pieces are in it, so randomly chosen test pieces keep few listeners; a block of
consecutive pieces cuts the ring in two places only.

Rule, per ring (one per annotation file, pieces in key order): `round(test_fraction * n)` consecutive pieces
from a seeded start position are `test`, the next `round(validation_fraction * n)` are `validation` (adjacent
to the test block, so only three cuts), the rest `train`. The ring wraps around. The start is drawn with
`numpy.random.default_rng([seed, crc32(ring name)])`: the same seed and release always give the same split.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

MIXED = "mixed"  # a listener whose two pieces fall in different partitions


def ring_partitions(rings: Mapping[str, Sequence[str]], test_fraction: float, validation_fraction: float,
                    seed: int) -> dict[str, str]:
    """piece -> "train" | "validation" | "test" by the module's rule."""
    if not (0 <= test_fraction < 1 and 0 <= validation_fraction < 1 and test_fraction + validation_fraction < 1):
        raise ValueError(f"test_fraction {test_fraction} and validation_fraction {validation_fraction} must be in "
                         "[0, 1) and leave pieces for training")
    partition: dict[str, str] = {}
    for name in sorted(rings):
        ring = list(rings[name])
        n = len(ring)
        test, validation = int(round(test_fraction * n)), int(round(validation_fraction * n))
        start = int(np.random.default_rng([seed, zlib.crc32(name.encode())]).integers(0, max(n, 1)))
        for offset in range(n):
            kind = "test" if offset < test else "validation" if offset < test + validation else "train"
            partition[ring[(start + offset) % n]] = kind
    return partition


def listener_partitions(pairs: Mapping[str, tuple[str, str]], partition: Mapping[str, str]) -> dict[str, str]:
    """listener -> the partition of both their pieces, or MIXED."""
    out = {}
    for listener, (a, b) in pairs.items():
        out[listener] = partition[a] if partition[a] == partition[b] else MIXED
    return out


def split_counts(pieces: Mapping[str, str], listeners: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Pieces and whole listeners each partition keeps (and the listeners the cuts lose)."""
    piece_counts, listener_counts = Counter(pieces.values()), Counter(listeners.values())
    names = ("train", "validation", "test")
    return {
        "pieces": {p: piece_counts.get(p, 0) for p in names},
        "listeners": {**{p: listener_counts.get(p, 0) for p in names}, MIXED: listener_counts.get(MIXED, 0)},
    }
