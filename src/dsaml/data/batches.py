"""Model batches from aligned songs: padding and masks, and the (support, query) batches of a task.

Training tasks use one random `window_steps` crop per song (the reference trains on 30 s clips); the crop
positions come from the task's own seed, so a task computes the same on any process and after a resume.
Personalization and evaluation adapt on EVERY window of the support song(s) (`support_batch`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from dsaml.data.alignment import AlignedSong, crop, windows

if TYPE_CHECKING:  # pragma: no cover
    from dsaml.data.song_store import SongStore
    from dsaml.data.tasks import Task


def collate(items: Sequence[AlignedSong]) -> dict[str, torch.Tensor]:
    """Aligned songs or windows of possibly different lengths -> padded model batch with `attention_mask`."""
    if not items:
        raise ValueError("collate needs at least one item")
    longest = max(item.num_steps for item in items)
    first = items[0].features
    features = first.new_zeros(len(items), longest, *first.shape[1:])
    labels = torch.zeros(len(items), longest, 2)
    mask = torch.zeros(len(items), longest, dtype=torch.long)
    for i, item in enumerate(items):
        features[i, : item.num_steps] = item.features
        labels[i, : item.num_steps] = item.labels
        mask[i, : item.num_steps] = 1
    batch = {"input_features": features, "attention_mask": mask, "labels": labels}
    if items[0].waveform is not None:
        per_step = items[0].waveform.numel() // items[0].num_steps
        wave = torch.zeros(len(items), longest * per_step)
        for i, item in enumerate(items):
            wave[i, : item.waveform.numel()] = item.waveform
        batch["global_input_values"] = wave
    if items[0].harmonic is not None:
        harmonic = torch.zeros(len(items), longest, items[0].harmonic.shape[1])
        for i, item in enumerate(items):
            harmonic[i, : item.num_steps] = item.harmonic
        batch["harmonic_features"] = harmonic
    return batch


def concat_batches(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate two model batches along the batch axis, zero-padding the step axis to the longer one."""
    steps = max(a["attention_mask"].shape[1], b["attention_mask"].shape[1])
    out = {}
    for key in a:
        x, y = a[key], b[key]
        if key == "global_input_values":  # samples, not steps: pad by the per-step ratio
            per_step = x.shape[1] // a["attention_mask"].shape[1]
            x, y = (nn.functional.pad(t, (0, steps * per_step - t.shape[1])) for t in (x, y))
        else:
            pad = lambda t: nn.functional.pad(t, (0, 0) * (t.ndim - 2) + (0, steps - t.shape[1]))  # noqa: E731
            x, y = pad(x), pad(y)
        out[key] = torch.cat([x, y])
    return out


@dataclass
class TaskBatch:
    """One task as model batches (`collate`): the support set and the query set, and the seed of its dropout
    masks (so a task's gradient is the same on any process, in any order, after a resume)."""

    support: dict[str, torch.Tensor]
    query: dict[str, torch.Tensor]
    seed: int | None = None

    def combined(self) -> dict[str, torch.Tensor]:
        """Support and query in one batch (padded to the longer of the two)."""
        return concat_batches(self.support, self.query)

    def to(self, device: torch.device | str) -> TaskBatch:
        return TaskBatch({k: v.to(device) for k, v in self.support.items()},
                         {k: v.to(device) for k, v in self.query.items()}, self.seed)


def random_window(song: AlignedSong, window_steps: int, rng: np.random.Generator) -> AlignedSong:
    """A `window_steps` crop at a random position (the whole song when it is shorter)."""
    if song.num_steps <= window_steps:
        return song
    start = int(rng.integers(0, song.num_steps - window_steps + 1))
    return crop(song, start, window_steps)


def task_batch(store: SongStore, task: Task, window_steps: int) -> TaskBatch:
    """A training task: one random window per support and query song, positions drawn from `task.seed`."""
    rng = np.random.default_rng(task.seed)
    support = [random_window(s, window_steps, rng) for s in store.songs(task.support)]
    query = [random_window(s, window_steps, rng) for s in store.songs(task.query)]
    return TaskBatch(collate(support), collate(query), task.seed)


def support_batch(songs: Sequence[AlignedSong], window_steps: int) -> dict[str, torch.Tensor]:
    """Every window of the support song(s), as one adaptation batch (what personalization adapts on)."""
    return collate([w for song in songs for w in windows(song, window_steps)])
