"""Seeded, order-independent held-out selections (validation songs, test songs or test annotators).

Ids are sorted before shuffling, so the same ids and seed always give the same selection whatever order the
source files list them in. A positive fraction of two or more ids selects at least one and leaves at least one.
"""

from __future__ import annotations

import zlib

import numpy as np


def id_order(value: str) -> tuple[int, float, str]:
    """Sort key of song and annotator ids: numeric ids first, in numeric order (2, 10, 100), then the others."""
    try:
        return (0, float(value), value)  # numeric ids in numeric order (2, 10, 100)
    except ValueError:
        return (1, 0.0, value)


def held_out(ids, fraction: float, seed: int, salt: str) -> set[str]:
    """`round(fraction * len(ids))` ids drawn with `seed`; `salt` keeps different selections independent."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"a held-out fraction must be in [0, 1), got {fraction}")
    pool = sorted(set(ids), key=id_order)
    count = int(round(fraction * len(pool)))
    if fraction > 0 and len(pool) >= 2:
        count = min(max(count, 1), len(pool) - 1)
    if count == 0:
        return set()
    rng = np.random.default_rng([seed, zlib.crc32(salt.encode())])
    return {pool[i] for i in rng.permutation(len(pool))[:count]}
