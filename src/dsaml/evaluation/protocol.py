"""The personalize-then-score protocol: ONE path for training-time validation and testing, `dsaml evaluate` and
the benchmarks.

PDMER protocol (DSAML's task construction, `dsaml.data.tasks.evaluation_tasks`): for every annotator of a partition,
ONE of their songs is the support (personalization), their OTHER songs are the query. The query songs are
predicted whole (sliding windows) by the unpersonalized model ("before") and by the model personalized on every
window of the support song ("after", `dsaml.personalization.personalize.personalize_song`, or the LoRA adapter it would save),
and scored with `dsaml.evaluation.scores.score_songs` (RMSE, Pearson r, CCC per song with population variances, averaged):
the numbers the `evaluate` modules in `dsaml.evaluation.metrics` give.

Every result comes with its reference points, scored on the same query songs: the two recalibrations of the
unpersonalized curve fitted on the same support song (`dsaml.evaluation.recalibration`: `shift`, `linear`) and, where the
dataset knows them (`dsaml.evaluation.references`), the synthetic set's `population` emotion and listener `oracle` (so that
`summarize` can give the share of the gap to the oracle each method closes), or VGMIDI's `crowd` (the other
listeners' average on the query piece). A listener evaluated with several support songs
(`evaluation_tasks(..., support_repeats=N)`) counts once: their repeats are averaged first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from dsaml.data.alignment import AlignedSong
from dsaml.data.song_store import SongStore
from dsaml.data.tasks import Task
from dsaml.evaluation.recalibration import DEFAULT_SHRINKAGE, fit_linear, fit_shift, recalibrate
from dsaml.evaluation.references import CrowdReferences, ListenerReferences
from dsaml.evaluation.scores import score_songs
from dsaml.inference.songs import predict_songs, song_on
from dsaml.personalization.adapters import lora_adapter
from dsaml.personalization.personalize import personalize_song

__all__ = ["MODES", "Personalizer", "TaskResult", "evaluate_tasks", "inner_loop", "reference_points"]

MODES = ("full", "lora")


@dataclass
class TaskResult:
    """One annotator's query scores without ("before") and with ("after") personalization on the support,
    and what the personalizer reported (`extra`, e.g. the support loss before and after)."""

    annotator: str
    num_query_songs: int
    before: dict[str, float]
    after: dict[str, float]
    support_songs: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    references: dict[str, dict[str, float]] = field(default_factory=dict)  # shift, linear[, population, oracle | crowd]

    def flat(self) -> dict:
        """One flat record (a CSV row): `annotator`, ..., `before/<score>`, `after/<score>`, `shift/<score>`, ..."""
        record = {"annotator": self.annotator, "support_songs": self.support_songs,
                  "num_query_songs": self.num_query_songs, **self.extra}
        stages = {"before": self.before, "after": self.after, **self.references}
        for stage, scores in stages.items():
            record.update({f"{stage}/{k}": v for k, v in scores.items() if k != "num_songs"})
        return record


# personalizer(base model, support songs, task) -> (personalized model, what it reports)
Personalizer = Callable[[nn.Module, Sequence[AlignedSong], Task], tuple[nn.Module, dict]]


def inner_loop(*, mode: str = "full", steps: int | None = None, lr: float | None = None, seed: int | None = None,
               rank: int = 4, full_modules: Sequence[str] | None = None) -> Personalizer:
    """The personalizer of the protocol: the meta-learned inner loop (`personalize_song`) on the support song(s).

    `seed`: the inner loop's dropout seed (default: each task's own seed, so a task scores the same in training
    and in `dsaml evaluate`). `mode`: "full" scores the adapted weights, "lora" the rank-`rank` LoRA adapter that
    `dsaml personalize` would save (`full_modules` as there)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    def personalizer(base, support, task):
        result = personalize_song(base, support, user=task.annotator, steps=steps, lr=lr,
                                  seed=task.seed if seed is None else seed)
        adapted = result.model
        if mode == "lora":
            adapted = lora_adapter(base, result, rank=rank,
                                   **({} if full_modules is None else {"full_modules": full_modules}))[0]
        return adapted, {"support_loss_before": result.support_loss_before,
                         "support_loss_after": result.support_loss_after}

    return personalizer


def evaluate_tasks(model, store: SongStore, tasks: Sequence[Task], personalizer: Personalizer | None, *,
                   window_steps: int | None = None, hop_steps: int | None = None, progress: bool = False,
                   device: torch.device | str | None = None,
                   references: ListenerReferences | CrowdReferences | None = None,
                   shrinkage: float | None = None) -> list[TaskResult]:
    """For each task: score the query songs with the model as is and after personalizing on the support song(s),
    beside the reference points (module docstring; `shrinkage` of the linear recalibration).

    `personalizer` makes the "after" model, usually `inner_loop(...)`; `None` scores the model as is only
    ("after" = "before", no reference points), for averaged labels, where there is no listener to personalize
    to. `model` is not modified."""
    from tqdm.auto import tqdm

    config = model.config
    shrinkage = DEFAULT_SHRINKAGE if shrinkage is None else shrinkage
    window = window_steps or config.window_steps
    hop = hop_steps or config.hop_steps
    was_training = model.training
    model.eval()
    results = []
    for task in tqdm(tasks, desc="evaluating annotators", disable=not progress, leave=False):
        query = [song_on(s, device) for s in store.songs(task.query)]
        labels = [s.labels.numpy() for s in query]
        base = predict_songs(model, query, window, hop)
        before = score_songs(base, labels)
        after, extra, points = before, {}, {}
        support = [song_on(s, device) for s in store.songs(task.support)]
        if personalizer is not None:
            with torch.enable_grad():
                adapted, extra = personalizer(model, support, task)
            after = score_songs(predict_songs(adapted, query, window, hop), labels)
            del adapted
            points = reference_points(model, support, query, base, labels, window, hop, references, shrinkage)
        results.append(TaskResult(task.annotator, len(query), before, after, [s.song_id for s in support], extra,
                                  points))
    model.train(was_training)
    return results


def reference_points(model, support, query, base, labels, window, hop, references, shrinkage) -> dict:
    """The reference methods' scores on the query songs (see the module docstring)."""
    support_base = predict_songs(model, support, window, hop)
    support_labels = [s.labels.numpy() for s in support]
    points = {}
    for name, coefficients in (("shift", fit_shift(support_base, support_labels)),
                               ("linear", fit_linear(support_base, support_labels, shrinkage))):
        points[name] = score_songs([recalibrate(p, coefficients) for p in base], labels)
    if references is not None:
        for name, curves in references.curves(query).items():
            points[name] = score_songs(curves, labels)
    return points
