"""`dsaml train` / `accelerate launch -m dsaml.cli train`: DSAML meta-training over annotator tasks.

    dsaml train --config synthetic_small                       # the embedded default, a few minutes on a CPU
    accelerate launch --multi_gpu --num_processes 2 -m dsaml.cli train --config deam_pdmer --dataset data/deam
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m dsaml.cli train --config synthetic_small

Each outer step draws a meta-batch of annotator tasks (a pure function of seed and step), gives every process
an equal disjoint share, computes the local mean meta-gradient functionally (`dsaml.training.meta`), averages it across
processes with `accelerator.reduce` and takes one Adam step. The model is not wrapped in DDP: nothing in the
inner loop touches `.grad`, and the one explicit all-reduce is the whole synchronization.

Outputs in `output_dir`: `best/` (selected on validation annotators only) and `last/` (save_pretrained folders
with remote code, feature extractor and model card), `checkpoints/step_*` (resumable), `metrics.jsonl`,
`training_curves.png`, `test_results.json` (the test partition, reported, never selected on), tensorboard logs.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from dsaml.data.batches import task_batch
from dsaml.data.tasks import shard
from dsaml.evaluation.summary import summarize
from dsaml.training.arguments import TrainingArguments
from dsaml.training.checkpoints import export_model, save_checkpoint
from dsaml.training.final_report import finish
from dsaml.training.interrupts import StepBoundaryInterrupt
from dsaml.training.meta import apply_meta_gradient, meta_gradient, trainable_parameters
from dsaml.training.model_setup import ridge_metrics
from dsaml.training.run import Run, evaluate, setup

__all__ = ["train", "training_step"]


def training_step(run: Run) -> dict:
    """One outer step: this process's share of the meta-batch, one all-reduced meta-gradient, one Adam step."""
    args, accelerator, model = run.args, run.accelerator, run.model
    started = time.perf_counter()
    tasks = shard(run.data.sampler.sample(run.state["step"]), accelerator.process_index, accelerator.num_processes)
    batches = [task_batch(run.data.train, t, model.config.window_steps).to(accelerator.device) for t in tasks]
    with accelerator.autocast():
        grads, stats = meta_gradient(model, batches, algorithm=args.algorithm,
                                     base_loss_weight=args.base_loss_weight)
    apply_meta_gradient(model, grads, accelerator)
    max_norm = args.max_grad_norm if args.max_grad_norm else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(list(trainable_parameters(model).values()), max_norm)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    loss = accelerator.reduce(torch.tensor(stats["query_loss"], device=accelerator.device), "mean")
    run.state["step"] += 1
    return {"train/query_loss": float(loss), "train/grad_norm": float(grad_norm),
            "train/tasks_per_second": args.tasks_per_step / (time.perf_counter() - started), **ridge_metrics(model)}


def validate_and_select(run: Run) -> dict:
    """Validation scores; a better `select_metric` than the best so far exports the model to `best/`."""
    args, state = run.args, run.state
    results = evaluate(run, run.model, run.data.validation, run.data.validation_tasks)
    metrics = summarize(results, "validation") if results else {}
    score = metrics.get(args.select_metric)
    if score is None:
        raise KeyError(f"select_metric {args.select_metric!r} is not among the validation metrics {sorted(metrics)}")
    best = state["best_score"]
    if best is None or (score > best if args.select_greater_is_better else score < best):
        state["best_score"], state["best_step"] = score, state["step"]
        if run.accelerator.is_main_process:
            export_model(run.model, run.extractor, run.output_dir / "best")
    return metrics


def checkpoint(run: Run) -> Path:
    return save_checkpoint(run.accelerator, run.model, run.state, run.output_dir, run.args.keep_checkpoints)


def train(args: TrainingArguments) -> dict:
    """Run (or resume) training; returns the final metrics (validation of the best model, test)."""
    from tqdm.auto import tqdm

    run = setup(args)
    bar = tqdm(total=args.max_steps, initial=run.state["step"], desc="meta-training", disable=not run.progress,
               dynamic_ncols=True)
    run.model.train()
    try:
        with StepBoundaryInterrupt() as interrupt:
            while run.state["step"] < args.max_steps:
                saved = run_one_step(run, bar)
                if interrupt.agreed(run.accelerator):
                    path = saved or checkpoint(run)
                    if run.accelerator.is_main_process:
                        print(f"\ninterrupted after step {run.state['step']}: saved {path}; rerun the same command "
                              "to resume", file=sys.stderr)
                    raise KeyboardInterrupt
    finally:
        bar.close()
    final = finish(run)
    run.accelerator.end_training()
    return final


def run_one_step(run: Run, bar) -> Path | None:
    """A training step, its validation and log lines, and its checkpoint when one is due (returned)."""
    args = run.args
    metrics = training_step(run)
    step = run.state["step"]
    if step % args.validation_every == 0 or step == args.max_steps:
        metrics.update(validate_and_select(run))
        if run.accelerator.is_main_process:
            bar.write(_validation_line(step, metrics))
    run.log.write(step, metrics)
    if run.trackers:
        run.accelerator.log(metrics, step=step)
    bar.update(1)
    bar.set_postfix(loss=f"{metrics['train/query_loss']:.3f}")
    if step % args.checkpoint_every == 0 or step == args.max_steps:
        return checkpoint(run)
    return None


def _validation_line(step: int, metrics: dict) -> str:
    parts = [f"step {step}"]
    for stage in ("before", "after"):
        keys = [f"validation/{stage}/{k}" for k in ("ccc", "pearson", "rmse")]
        if all(k in metrics for k in keys):
            ccc, pcc, rmse = (metrics[k] for k in keys)
            parts.append(f"{stage} personalization: CCC {ccc:.3f}  PCC {pcc:.3f}  RMSE {rmse:.3f}")
    if "ridge/strength_arousal" in metrics:
        parts.append("ridge strength A/V {:.3g}/{:.3g}, level share {:.2f}/{:.2f}".format(
            *(metrics[f"ridge/{kind}_{dim}"] for kind in ("strength", "level_share") for dim in ("arousal", "valence"))))
    return " | ".join(parts)
