"""The data of a training run: the training rows and task sampler, and the fixed validation and test tasks.

Validation annotators are the dataset's `validation` partition when it has one, else held out of the TRAIN
partition (model selection never sees a test partition); the test partitions' listeners are scored once, after
training. Every song is decoded before the first step.
"""

from __future__ import annotations

import logging

import torch

from dsaml.data.datasets import annotator_songs, dataset_metadata, dataset_root, load_pdmer
from dsaml.data.song_store import SongStore
from dsaml.data.tasks import REPORT_SUPPORT_REPEATS, Task, TaskSampler, evaluation_tasks, validation_split
from dsaml.evaluation.references import references_for
from dsaml.training.arguments import TrainingArguments

logger = logging.getLogger("dsaml.training.loop")


class TrainingData:
    """The training rows, the task sampler, and the fixed validation and test tasks.

    `per_annotator`: the labels are each listener's own (`pdmer_flat`: tasks personalize), not averages (`dmer`)."""

    def __init__(self, args: TrainingArguments, config, accelerator) -> None:
        with accelerator.main_process_first():  # builds the synthetic set / downloads once
            self.root = dataset_root(args.dataset)
            splits = load_pdmer(self.root, args.data_config)
        value_range = dataset_metadata(self.root).get("value_range", (-1.0, 1.0))
        train_rows = splits["train"]
        groups = annotator_songs(train_rows)
        self.per_annotator = args.data_config == "pdmer_flat"
        if self.per_annotator and "validation" in splits:  # the dataset's own held-out listeners (fixed)
            train_groups = groups
            self.validation_rows = splits["validation"]
            self.validation_tasks = evaluation_tasks(annotator_songs(self.validation_rows),
                                                     support_songs=args.support_songs,
                                                     max_query_songs=args.validation_max_query_songs, seed=args.seed)
        elif self.per_annotator:
            split = validation_split(groups, validation_annotators=args.validation_annotators,
                                     support_songs=args.support_songs,
                                     max_query_songs=args.validation_max_query_songs, seed=args.seed)
            train_groups, self.validation_tasks = split.train_groups, split.tasks
            self.validation_rows = train_rows
        else:  # dmer: averaged labels, the release's validation split, no personalization
            train_groups = groups
            self.validation_rows = splits["validation"]
            self.validation_tasks = self._whole_split_tasks(self.validation_rows, args.validation_max_query_songs)
        self.sampler = TaskSampler(train_groups, support_songs=args.support_songs, query_songs=args.query_songs,
                                   tasks_per_step=args.tasks_per_step, seed=args.seed)
        self.train = SongStore(train_rows, self.root, config, value_range)
        self.validation = (self.train if self.validation_rows is train_rows
                           else SongStore(self.validation_rows, self.root, config, value_range))
        self.references = references_for(self.root)
        # the final report: every validation and test listener with `REPORT_SUPPORT_REPEATS` support songs
        self.final_validation_tasks = self.validation_tasks
        if self.per_annotator:
            self.final_validation_tasks = self._listener_tasks(args, self.validation_rows,
                                                               args.validation_max_query_songs,
                                                               only={t.annotator for t in self.validation_tasks})
        self.tests: dict[str, tuple] = {}  # partition -> (SongStore, tasks): `test`, `test_unseen`, ...
        for name in sorted(n for n in splits if n.startswith("test")) if args.evaluate_test else []:
            rows = splits[name]
            tasks = (self._listener_tasks(args, rows, args.test_max_query_songs) if self.per_annotator
                     else self._whole_split_tasks(rows, args.test_max_query_songs))
            self.tests[name] = (SongStore(rows, self.root, config, value_range), tasks)

    @staticmethod
    def _listener_tasks(args, rows, max_query_songs, only=None):
        """Repeated-support tasks for every listener of `rows` (of `only`, when given: the validation listeners
        held out of the train rows, whose other listeners must not be scored)."""
        groups = annotator_songs(rows)
        if only is not None:
            groups = {a: r for a, r in groups.items() if a in only}
        usable = {a: r for a, r in groups.items() if len(r) > args.support_songs}
        if len(usable) < len(groups):
            logger.warning("%d annotator(s) with <= %d songs cannot be personalized and are not scored",
                           len(groups) - len(usable), args.support_songs)
        return evaluation_tasks(usable, support_songs=args.support_songs, max_query_songs=max_query_songs,
                                seed=args.seed, support_repeats=REPORT_SUPPORT_REPEATS)

    @staticmethod
    def _whole_split_tasks(rows, max_songs):
        indices = tuple(range(len(rows)))[:max_songs]
        return [Task("average", (), indices, 0, 0)] if indices else []

    def training_rows(self) -> list[int]:
        """The rows of `train` that meta-training tasks draw from (validation listeners held out), in order."""
        return sorted({i for rows in self.sampler.groups.values() for i in rows})

    def calibration_steps(self, max_songs: int = 32) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every step of up to `max_songs` training songs (evenly spaced in row order, one row per song): the
        fixed sample the model's normalization statistics are set from before the first step
        (`DualScaleFeatureFusion.calibrate`), as (input features, harmonic views or None)."""
        first_row: dict[str, int] = {}
        for i in self.training_rows():
            first_row.setdefault(self.train.rows[i]["song_id"], i)
        rows = list(first_row.values())
        chosen = rows[:: max(1, -(-len(rows) // max_songs))][:max_songs]
        songs = self.train.songs(chosen)
        harmonic = None
        if all(song.harmonic is not None for song in songs):
            harmonic = torch.cat([song.harmonic for song in songs])
        return torch.cat([song.features for song in songs]), harmonic

    def preload(self, progress: bool) -> None:
        """Decode every song now: bad audio or annotations fail before the first step, naming the file."""
        self.train.preload(self.training_rows(), progress=progress)
        for task in self.validation_tasks:
            self.validation.songs(task.support + task.query)
        for store, tasks in self.tests.values():
            for task in tasks:
                store.songs(task.support + task.query)
