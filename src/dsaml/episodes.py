"""From task indices to model batches, and the personalize-then-score protocol shared by training-time
validation, `dsaml evaluate` and the benchmarks.

Training tasks use one random `window_steps` crop per song (the reference trains on 30 s clips); the crop
positions come from the task's own seed, so a task computes the same on any process and after a resume.
Evaluation adapts on EVERY window of the support song(s) and predicts whole query songs with sliding windows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dsaml.adaptation import adapt
from dsaml.examples import AlignedSong, collate, crop, windows
from dsaml.meta import TaskBatch
from dsaml.scores import score_songs
from dsaml.song_store import SongStore
from dsaml.tasks import Task


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


def personalized_copy(model, support: dict[str, torch.Tensor], *, steps: int | None = None,
                      lr: float | None = None, seed: int = 0):
    """A copy of `model` adapted to `support` with the meta-learned inner loop; `model` is left untouched.

    The inner loop runs in training mode, as in meta-training, with dropout seeded by `seed` (reproducible)."""
    adapted = copy.deepcopy(model)
    adapted.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fast = adapt(adapted, support, steps=steps, lr=lr)
    with torch.no_grad():
        params = dict(adapted.named_parameters())
        for name, value in fast.items():
            params[name].copy_(value)
    return adapted.eval()


@torch.no_grad()
def predict_songs(model, songs: Sequence[AlignedSong], window_steps: int, hop_steps: int) -> list[np.ndarray]:
    """`[steps, 2]` predictions of whole songs (sliding windows), one song at a time."""
    model.eval()
    out = []
    for song in songs:
        batch = collate([song])
        pred = model.predict_long(
            batch["input_features"], global_input_values=batch.get("global_input_values"),
            window_steps=window_steps, hop_steps=hop_steps,
        )
        out.append(pred[0].float().cpu().numpy())
    return out


@dataclass
class TaskResult:
    """One annotator's query scores without ("before") and with ("after") personalization on the support,
    and what the personalizer reported (`extra`)."""

    annotator: str
    num_query_songs: int
    before: dict[str, float]
    after: dict[str, float]
    support_songs: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


Personalizer = Callable[[nn.Module, Sequence[AlignedSong], Task], tuple[nn.Module, dict]]


def adapted_copy(model, support_songs: Sequence[AlignedSong], task: Task) -> tuple[nn.Module, dict]:
    """The default personalizer: the meta-learned inner loop on every window of the support song(s)."""
    return personalized_copy(model, support_batch(support_songs, model.config.window_steps), seed=task.seed), {}


def evaluate_tasks(model, store: SongStore, tasks: Sequence[Task], *, window_steps: int | None = None,
                   hop_steps: int | None = None, personalize: bool = True, personalizer: Personalizer = adapted_copy,
                   progress: bool = False, device: torch.device | str | None = None) -> list[TaskResult]:
    """For each task: score the query songs with the model as is and after adapting on the support song(s).

    `personalizer(model, support_songs, task) -> (adapted model, extra)` makes the "after" model: by default
    `adapted_copy`; `dsaml evaluate` passes one that can also score the user's LoRA adapter."""
    from tqdm.auto import tqdm

    config = model.config
    window = window_steps or config.window_steps
    hop = hop_steps or config.inference_hop_steps
    was_training = model.training
    model.eval()
    results = []
    for task in tqdm(tasks, desc="evaluating annotators", disable=not progress, leave=False):
        query = store.songs(task.query)
        references = [s.labels.numpy() for s in query]
        moved = [_to(s, device) for s in query]
        before = score_songs(predict_songs(model, moved, window, hop), references)
        after, extra = before, {}
        support = store.songs(task.support)
        if personalize:
            with torch.enable_grad():
                adapted, extra = personalizer(model, [_to(s, device) for s in support], task)
            after = score_songs(predict_songs(adapted, moved, window, hop), references)
            del adapted
        results.append(TaskResult(task.annotator, len(query), before, after, [s.song_id for s in support], extra))
    model.train(was_training)
    return results


def summarize(results: Sequence[TaskResult], prefix: str) -> dict[str, float]:
    """Mean over annotators of the before/after scores: `{prefix}/before/ccc`, `{prefix}/after/rmse`, ..."""
    out: dict[str, float] = {}
    for stage in ("before", "after"):
        for key in results[0].before:
            if key == "num_songs":
                continue
            out[f"{prefix}/{stage}/{key}"] = float(np.mean([getattr(r, stage)[key] for r in results]))
    out[f"{prefix}/annotators"] = len(results)
    return out


def _to(song: AlignedSong, device) -> AlignedSong:
    if device is None:
        return song
    wave = song.waveform.to(device) if song.waveform is not None else None
    return AlignedSong(song.song_id, song.annotator, song.features.to(device), song.labels, song.start_step, wave)
