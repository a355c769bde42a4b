"""Setting up a training run: accelerator, model, data, optimizer, resumed state; and its distributed evaluation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from dsaml.evaluation.protocol import evaluate_tasks, inner_loop
from dsaml.modeling import DSAMLFeatureExtractor
from dsaml.training.arguments import TrainingArguments
from dsaml.training.average_readout import fit_average_readout
from dsaml.training.checkpoints import latest_checkpoint, load_checkpoint
from dsaml.training.metrics_log import MetricsLog
from dsaml.training.model_setup import build_model, parameter_groups
from dsaml.training.run_data import TrainingData

logger = logging.getLogger("dsaml.training.loop")

__all__ = ["Run", "evaluate", "setup"]


def _trackers(args: TrainingArguments) -> list[str]:
    wanted = []
    for name in args.report_to:
        if name == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                logger.warning("report_to includes tensorboard but it is not installed; logging to metrics.jsonl only")
                continue
        wanted.append(name)
    return wanted


@dataclass
class Run:
    """Everything one training run works with, made by `setup`."""

    args: TrainingArguments
    accelerator: object
    model: torch.nn.Module
    extractor: object
    data: object  # dsaml.training.run_data.TrainingData
    optimizer: torch.optim.Optimizer
    state: dict  # step, best_score, best_step, sampler: what a checkpoint restores
    log: MetricsLog
    trackers: list[str]
    progress: bool

    @property
    def output_dir(self) -> Path:
        return Path(self.args.output_dir)


def setup(args: TrainingArguments) -> Run:
    """Accelerator, model (identical on every process), data, optimizer; resumed from the latest checkpoint."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    output_dir = Path(args.output_dir)
    trackers = _trackers(args)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    progress = args.progress and accelerator.is_main_process
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "training_args.yaml").write_text(yaml.safe_dump(args.to_dict(), sort_keys=False), encoding="utf-8")
    if args.tasks_per_step % accelerator.num_processes:
        raise ValueError(f"tasks_per_step={args.tasks_per_step} must be a multiple of the number of processes "
                         f"({accelerator.num_processes})")
    set_seed(args.seed)  # identical initial weights on every process
    model = build_model(args).to(accelerator.device)
    data = TrainingData(args, model.config, accelerator)
    if args.calibrate_adaptation and not data.final_validation_tasks:  # found out now, not after training
        raise ValueError(f"calibrate_adaptation needs validation listeners, and {args.dataset} gives none")
    data.preload(progress)
    optimizer = torch.optim.Adam(parameter_groups(model, args), lr=args.learning_rate, weight_decay=args.weight_decay)
    optimizer = accelerator.prepare(optimizer)
    if trackers:
        accelerator.init_trackers("dsaml", config={k: v for k, v in args.to_dict().items()
                                                   if isinstance(v, (int, float, str, bool))})
    state = {"step": 0, "best_score": None, "best_step": None, "sampler": data.sampler.state_dict()}
    resume = latest_checkpoint(output_dir) if args.resume_from_checkpoint == "auto" else args.resume_from_checkpoint
    if resume:
        state = load_checkpoint(accelerator, model, resume)
        data.sampler.check_state(state["sampler"])
        logger.info("resumed from %s at step %d", resume, state["step"])
        if accelerator.is_main_process:
            print(f"resuming from {resume} (step {state['step']})")
    elif not args.init_from:  # a fresh model's fixed normalization statistics
        features, harmonic = data.calibration_steps()
        model.dsaml.features.calibrate(features.to(accelerator.device),
                                       None if harmonic is None else harmonic.to(accelerator.device))
    if args.fit_average_readout and not resume:  # checkpoints keep its figures for the final report
        state["average_readout"] = _fit_average_readout(args, model, data, accelerator)
    log = MetricsLog(output_dir / "metrics.jsonl", state["step"], accelerator.is_main_process)
    return Run(args, accelerator, model, DSAMLFeatureExtractor.from_model_config(model.config), data, optimizer,
               state, log, trackers, progress)


def _fit_average_readout(args: TrainingArguments, model, data, accelerator) -> dict[str, float]:
    """The output layer refitted to the average training listener: each process sums the statistics of its share
    of the rows, one all-reduce adds them up, and every process solves the same system. Returns the training
    rows' RMSE before and after, per dimension (`average_readout/<dimension>/rmse_<before|after>`)."""
    rows = data.training_rows()[accelerator.process_index :: accelerator.num_processes]
    reduce = (lambda stats: accelerator.reduce(stats, reduction="sum")) if accelerator.num_processes > 1 else None
    report = fit_average_readout(model, data.train, rows, model.config.window_steps,
                                 reduce=reduce)
    if accelerator.is_main_process:
        rmse = ", ".join(f"{d} {b:.3f} -> {a:.3f}" for d, b, a in zip(("arousal", "valence"), report["before"],
                                                                       report["after"]))
        print(f"output layer refitted to the average training listener (RMSE on the training rows: {rmse})")
    return {f"average_readout/{dim}/rmse_{when}": float(report[when][d])
            for d, dim in enumerate(("arousal", "valence")) for when in ("before", "after")}


def evaluate(run: Run, model, store, tasks) -> list:
    """Every process scores its share of the tasks (`dsaml.evaluation`); all processes get everyone's results."""
    from accelerate.utils import gather_object

    accelerator = run.accelerator
    mine = tasks[accelerator.process_index :: accelerator.num_processes]
    personalizer = inner_loop() if run.data.per_annotator else None
    with accelerator.autocast():
        results = evaluate_tasks(model, store, mine, personalizer, device=accelerator.device,
                                 progress=run.progress, references=run.data.references)
    if accelerator.num_processes > 1:
        results = gather_object(results)
    return sorted(results, key=lambda r: r.annotator)
