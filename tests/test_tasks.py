"""Annotator tasks: deterministic meta-batches, disjoint shards, held-out validation annotators, clear errors."""

from __future__ import annotations

import pytest

from dsaml.data.tasks import TaskSampler, evaluation_tasks, shard, validation_split
from dsaml.errors import TaskError

GROUPS = {f"A{i}": list(range(100 * i, 100 * i + 10 + i)) for i in range(6)}  # A0: 10 songs ... A5: 15 songs


def test_meta_batch_is_a_function_of_seed_and_step():
    sampler = TaskSampler(GROUPS, support_songs=1, query_songs=4, tasks_per_step=4, seed=3)
    again = TaskSampler(GROUPS, support_songs=1, query_songs=4, tasks_per_step=4, seed=3)
    assert sampler.sample(7) == again.sample(7)
    assert sampler.sample(7) != sampler.sample(8)
    assert sampler.sample(7) != TaskSampler(GROUPS, query_songs=4, tasks_per_step=4, seed=4).sample(7)
    for task in sampler.sample(7):
        songs = set(GROUPS[task.annotator])
        assert len(task.support) == 1 and len(task.query) == 4
        assert set(task.support) <= songs and set(task.query) <= songs  # one annotator per task
        assert not set(task.support) & set(task.query)  # the support song is never queried
    assert len({t.annotator for t in sampler.sample(7)}) == 4  # distinct annotators within a step


def test_shards_are_disjoint_and_complete():
    tasks = TaskSampler(GROUPS, query_songs=4, tasks_per_step=6).sample(0)
    parts = [shard(tasks, rank, 3) for rank in range(3)]
    assert sorted(t.index for p in parts for t in p) == list(range(6))
    assert all(len(p) == 2 for p in parts)
    with pytest.raises(TaskError, match="not divisible by the number of processes"):
        shard(tasks, 0, 4)


def test_annotators_with_too_few_songs_are_named():
    with pytest.raises(TaskError, match=r"'A0' \(10\), 'A1' \(11\)"):
        TaskSampler(GROUPS, support_songs=1, query_songs=11)
    with pytest.raises(TaskError, match="must be >= 1"):
        TaskSampler(GROUPS, query_songs=0)


def test_validation_annotators_are_held_out_of_training():
    split = validation_split(GROUPS, validation_annotators=2, support_songs=1, max_query_songs=3, seed=0)
    held = {t.annotator for t in split.tasks}
    assert len(held) == 2 and not held & set(split.train_groups)
    assert set(split.train_groups) | held == set(GROUPS)
    for task in split.tasks:
        assert len(task.support) == 1 and len(task.query) == 3
    assert split.tasks == validation_split(GROUPS, validation_annotators=2, max_query_songs=3, seed=0).tasks
    with pytest.raises(TaskError, match="leaves no annotator"):
        validation_split(GROUPS, validation_annotators=6)


def test_evaluation_tasks_cover_every_annotator_once():
    tasks = evaluation_tasks(GROUPS, support_songs=1, max_query_songs=5, seed=0)
    assert [t.annotator for t in tasks] == sorted(GROUPS)
    assert all(len(t.query) == 5 for t in tasks)
    assert tasks == evaluation_tasks(GROUPS, support_songs=1, max_query_songs=5, seed=0)


def test_repeated_support_songs_start_with_the_single_support_task():
    groups = {"a": list(range(10)), "b": list(range(10, 14))}
    single = evaluation_tasks(groups, max_query_songs=5, seed=3)
    repeated = evaluation_tasks(groups, max_query_songs=5, seed=3, support_repeats=4)
    by = lambda tasks, name: [t for t in tasks if t.annotator == name]  # noqa: E731
    for name in groups:
        first = by(repeated, name)[0]
        assert (first.support, first.query, first.seed) == (by(single, name)[0].support, by(single, name)[0].query,
                                                            by(single, name)[0].seed)
    assert len(by(repeated, "a")) == 4 and len(by(repeated, "b")) == 3  # b: 4 songs, at most 3 supports
    for task in repeated:
        assert not set(task.support) & set(task.query) and len(task.query) == min(5, len(groups[task.annotator]) - 1)
    assert len({(t.annotator, t.support) for t in repeated}) == 7 and len({t.seed for t in repeated}) == 7
