"""Runs a training config's stages in order (`TrainingArguments.stages`), each resumable where it stopped.

A stage that finished (its `test_results.json` exists, written after its last step and its final evaluation)
is not run again; an interrupted stage resumes from its own last checkpoint, as a one-stage run does.
"""

from __future__ import annotations

from pathlib import Path

from dsaml.training.arguments import TrainingArguments
from dsaml.training.loop import train

__all__ = ["run_stages"]

DONE = "test_results.json"


def run_stages(args: TrainingArguments) -> dict:
    """Train every stage of `args` (one when it has none); returns the last stage's final metrics."""
    from accelerate import PartialState

    stages = args.stage_arguments()
    final: dict = {}
    for i, (name, stage_args) in enumerate(stages):
        last = i == len(stages) - 1
        if len(stages) > 1 and PartialState().is_main_process:
            print(f"== stage {i + 1}/{len(stages)}: {name} ({stage_args.algorithm} on {stage_args.data_config}, "
                  f"{stage_args.max_steps} steps) -> {stage_args.output_dir}")
        if not last and (Path(stage_args.output_dir) / DONE).is_file():
            if PartialState().is_main_process:
                print(f"stage {name} already finished: continuing from {stage_args.output_dir}/best")
            continue
        final = train(stage_args)
    return final
