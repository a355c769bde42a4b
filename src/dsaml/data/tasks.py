"""Annotator-based tasks (DSAML's task construction) and the validation split.

One task = one annotator: `support` = K of their songs (default 1), `query` = Q OTHER songs of the same
annotator (default 15), so the inner loop adapts to one listener and the query measures whether that helped.
The meta-batch of an outer step is a pure function of (seed, step): a resumed run draws exactly the tasks an
uninterrupted one would, and every process can shard it without communicating.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from dsaml.errors import TaskError

# Support songs per listener in the final report, `dsaml evaluate` and the benchmarks: each listener is personalized
# this many times, each time on another song, so a result does not hang on one support song.
REPORT_SUPPORT_REPEATS = 4


@dataclass(frozen=True)
class Task:
    """One annotator's episode: row indices of the support and query songs, and the seed of its randomness
    (window crops, dropout), so a task computes the same on any process."""

    annotator: str
    support: tuple[int, ...]
    query: tuple[int, ...]
    seed: int
    index: int  # position in the meta-batch

    def to_dict(self) -> dict:
        return asdict(self)


def _seed(*parts: int | str) -> int:
    """A stable 63-bit seed from integers and strings (Python's hash() is salted per process)."""
    key = "/".join(str(p) for p in parts).encode()
    return int(np.random.default_rng([zlib.crc32(key), len(key)]).integers(0, 2**63 - 1))


def check_annotators(groups: Mapping[str, Sequence[int]], needed: int, what: str) -> None:
    """Reject annotators with fewer than `needed` songs, naming them (never drop them silently)."""
    short = {a: len(rows) for a, rows in groups.items() if len(rows) < needed}
    if short:
        listed = ", ".join(f"{a!r} ({n})" for a, n in sorted(short.items())[:20])
        more = f" and {len(short) - 20} more" if len(short) > 20 else ""
        raise TaskError(
            f"{what}: {len(short)} annotator(s) have fewer than {needed} songs (support + query): {listed}{more}. "
            "Lower support_songs/query_songs or remove these annotators from the dataset."
        )


class TaskSampler:
    """Meta-batches of annotator tasks, deterministic from (seed, step).

    Args:
        groups: annotator -> row indices of their songs (`dsaml.data.datasets.annotator_songs`).
        support_songs, query_songs: K and Q.
        tasks_per_step: the meta-batch size. Annotators are drawn without replacement within a step (as the
            reference code does); only a meta-batch larger than the number of annotators repeats some.
        seed: the run's seed.
    """

    def __init__(self, groups: Mapping[str, Sequence[int]], *, support_songs: int = 1, query_songs: int = 15,
                 tasks_per_step: int = 16, seed: int = 0) -> None:
        if support_songs < 1 or query_songs < 1 or tasks_per_step < 1:
            raise TaskError(
                f"support_songs, query_songs and tasks_per_step must be >= 1, got {support_songs}, "
                f"{query_songs}, {tasks_per_step}"
            )
        if not groups:
            raise TaskError("no annotators to sample tasks from")
        check_annotators(groups, support_songs + query_songs, "task sampling")
        self.annotators = sorted(groups)
        self.groups = {a: tuple(int(i) for i in groups[a]) for a in self.annotators}
        self.support_songs, self.query_songs = support_songs, query_songs
        self.tasks_per_step, self.seed = tasks_per_step, seed

    def state_dict(self) -> dict:
        """What determines the task stream (the step is the loop's; tasks are a function of it)."""
        return {"seed": self.seed, "support_songs": self.support_songs, "query_songs": self.query_songs,
                "tasks_per_step": self.tasks_per_step, "annotators": self.annotators}

    def check_state(self, state: Mapping) -> None:
        """A resumed run must draw the same tasks: refuse a checkpoint written with another sampler."""
        mine = self.state_dict()
        diff = sorted(k for k in mine if state.get(k) != mine[k])
        if diff:
            raise TaskError(f"the checkpoint's task sampler differs from this run's in {diff}; resume with the "
                            "same dataset, seed, support_songs, query_songs and tasks_per_step")

    def sample(self, step: int) -> list[Task]:
        """The meta-batch of outer step `step` (all processes' tasks)."""
        rng = np.random.default_rng([self.seed, int(step), 0x7A5C])
        order: list[str] = []
        while len(order) < self.tasks_per_step:
            order += [self.annotators[i] for i in rng.permutation(len(self.annotators))]
        tasks = []
        for index, annotator in enumerate(order[: self.tasks_per_step]):
            rows = self.groups[annotator]
            picked = rng.choice(len(rows), size=self.support_songs + self.query_songs, replace=False)
            songs = [rows[i] for i in picked]
            tasks.append(Task(annotator, tuple(songs[: self.support_songs]), tuple(songs[self.support_songs:]),
                              int(rng.integers(0, 2**63 - 1)), index))
        return tasks


def shard(tasks: Sequence[Task], rank: int, world_size: int) -> list[Task]:
    """This process's share of a meta-batch: every `world_size`-th task, disjoint and together complete.

    The meta-batch must divide evenly, so that averaging per-process means (`accelerator.reduce(..., "mean")`)
    equals the mean over all tasks."""
    if len(tasks) % world_size:
        raise TaskError(
            f"tasks_per_step={len(tasks)} is not divisible by the number of processes ({world_size}); "
            "choose a multiple so every process adapts the same number of tasks"
        )
    return list(tasks[rank::world_size])


@dataclass
class ValidationSplit:
    """Which annotators train and which validate: validation tasks are fixed (the same every evaluation), one per
    held-out annotator (support = K of their songs, query = the others)."""

    train_groups: dict[str, list[int]]
    tasks: list[Task]

    @property
    def validation_rows(self) -> set[int]:
        return {i for t in self.tasks for i in t.query}


def validation_split(groups: Mapping[str, Sequence[int]], *, validation_annotators: float | int = 0.2,
                     support_songs: int = 1, max_query_songs: int | None = None, seed: int = 0) -> ValidationSplit:
    """Split the TRAIN partition's annotators into meta-training and validation (never the test partition).

    Args:
        groups: annotator -> rows of the train partition.
        validation_annotators: a fraction (< 1) or a count of annotators held out entirely (unseen listeners,
            what the test partition measures).
        max_query_songs: cap on the query songs per validation task (evaluation time).
    """
    names = sorted(groups)
    count = int(round(validation_annotators * len(names))) if validation_annotators < 1 else int(validation_annotators)
    if count >= len(names):
        raise TaskError(f"validation_annotators={validation_annotators} leaves no annotator of {len(names)} to train on")
    rng = np.random.default_rng([seed, 0x5A11])
    held = set(names[i] for i in rng.permutation(len(names))[:count])
    train_groups: dict[str, list[int]] = {}
    tasks: list[Task] = []
    for name in names:
        rows = [int(i) for i in groups[name]]
        order = [rows[i] for i in rng.permutation(len(rows))]
        if name in held:
            check_annotators({name: rows}, support_songs + 1, "validation annotators")
            query = order[support_songs:][:max_query_songs]
            tasks.append(Task(name, tuple(order[:support_songs]), tuple(query), _seed(seed, "val", name), len(tasks)))
            continue
        train_groups[name] = sorted(rows)
    return ValidationSplit(train_groups, tasks)


def evaluation_tasks(groups: Mapping[str, Sequence[int]], *, support_songs: int = 1,
                     max_query_songs: int | None = None, seed: int = 0, support_repeats: int = 1) -> list[Task]:
    """Fixed tasks for every annotator of `groups` (e.g. the test partition: reported, never selected on).

    `support_repeats` > 1 gives each annotator that many tasks with different support songs (consecutive
    blocks of one seeded order of their songs; the first repeat is the single-support task; fewer for an
    annotator without enough songs), each querying (up to `max_query_songs` of) the annotator's other songs:
    a result then does not hang on one support song."""
    if support_repeats < 1:
        raise TaskError(f"support_repeats must be >= 1, got {support_repeats}")
    tasks = []
    for name in sorted(groups):
        rows = [int(i) for i in groups[name]]
        check_annotators({name: rows}, support_songs + 1, "evaluation")
        order = [rows[i] for i in np.random.default_rng([seed, zlib.crc32(name.encode())]).permutation(len(rows))]
        for repeat in range(min(support_repeats, (len(rows) - 1) // support_songs)):
            support = order[repeat * support_songs:(repeat + 1) * support_songs]
            query = [r for r in order if r not in support][:max_query_songs]
            salt = ("eval", name) if repeat == 0 else ("eval", name, repeat)  # repeat 0: the seed without repeats
            tasks.append(Task(name, tuple(support), tuple(query), _seed(seed, *salt), len(tasks)))
    return tasks
