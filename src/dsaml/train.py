"""`dsaml train` / `accelerate launch -m dsaml.train`: DSAML meta-training over annotator tasks.

    dsaml train --config synthetic_small                       # the embedded default, a few minutes on a CPU
    accelerate launch --multi_gpu --num_processes 2 -m dsaml.train --config deam_pdmer --dataset data/deam
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m dsaml.train --config synthetic_small

Each outer step draws a meta-batch of annotator tasks (a pure function of seed and step), gives every process
an equal disjoint share, computes the local mean meta-gradient functionally (`dsaml.meta`), averages it across
processes with `accelerator.reduce` and takes one Adam step. The model is not wrapped in DDP: nothing in the
inner loop touches `.grad`, and the one explicit all-reduce is the whole synchronization.

Outputs in `output_dir`: `best/` (selected on validation annotators only) and `last/` (save_pretrained folders
with remote code, feature extractor and model card), `checkpoints/step_*` (resumable), `metrics.jsonl`,
`training_curves.png`, `test_results.json` (the test partition, reported, never selected on), tensorboard logs.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from dsaml.files import atomic_write_text
from dsaml.interrupts import StepBoundaryInterrupt
from dsaml.training_args import TrainingArguments

logger = logging.getLogger("dsaml.train")


def build_model(args: TrainingArguments):
    from dsaml.modeling import DSAMLConfig, DSAMLForDynamicEmotionRecognition

    if args.init_from:
        model = DSAMLForDynamicEmotionRecognition.from_pretrained(args.init_from, dtype=torch.float32)
        # a share calibrated for the weights it starts from says nothing about the weights this run learns
        model.config.adaptation_share = [1.0, 1.0]
        model.config.adaptation_max_delay = 0
        for key, value in args.model.items():
            setattr(model.config, key, value)
        model.config.validate_dsaml()
        _match_ridge_settings(model)
        return model
    return DSAMLForDynamicEmotionRecognition(DSAMLConfig(**args.model))


def _match_ridge_settings(model) -> None:
    """A stage that turns `learn_adaptation_ridge` on adds the learned settings, started from the config's values
    (the saved model it starts from had none); one that turns it off drops them."""
    from dsaml.modeling.modeling_dsaml import RidgeSettings

    learned = bool(model.config.learn_adaptation_ridge)
    if learned and model.predictor.ridge is None:
        model.predictor.ridge = RidgeSettings(model.config)
    elif not learned:
        model.predictor.ridge = None


def parameter_groups(model, args: TrainingArguments) -> list[dict]:
    """The optimizer's groups: every trainable parameter at `learning_rate`, the learned ridge settings (four
    scalars on log / logit scales) at `ridge_learning_rate` when it is set."""
    from dsaml.meta import trainable_parameters

    params = trainable_parameters(model)
    ridge = [p for n, p in params.items() if n.startswith("predictor.ridge.")]
    rest = [p for n, p in params.items() if not n.startswith("predictor.ridge.")]
    if not ridge or args.ridge_learning_rate is None:
        return [{"params": rest + ridge}]
    return [{"params": rest}, {"params": ridge, "lr": args.ridge_learning_rate}]


class MetricsLog:
    """metrics.jsonl (main process), resumable: lines after the resumed step are dropped, and so is a torn last
    line (a run killed while appending), which is the only line that can be incomplete."""

    def __init__(self, path: Path, resume_step: int, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        if enabled and path.is_file():
            kept = [r for r in self.read() if r.get("step", 0) <= resume_step]
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, step: int, values: dict) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")  # one write of one whole line

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        records = []
        for i, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i < len(lines) - 1:
                    raise ValueError(f"{self.path}: line {i + 1} is not JSON (only a torn last line is tolerated)")
                logger.warning("%s: dropping a torn last line", self.path)
        return records


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
    data: object  # dsaml.training_data.TrainingData
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

    from dsaml.checkpoints import latest_checkpoint, load_checkpoint
    from dsaml.modeling import DSAMLFeatureExtractor
    from dsaml.training_data import TrainingData

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
    from dsaml.average_readout import fit_average_readout

    rows = data.training_rows()[accelerator.process_index :: accelerator.num_processes]
    reduce = (lambda stats: accelerator.reduce(stats, reduction="sum")) if accelerator.num_processes > 1 else None
    report = fit_average_readout(model, data.train, rows, model.config.window_steps, args.average_readout_ridge,
                                 reduce=reduce)
    if accelerator.is_main_process:
        rmse = ", ".join(f"{d} {b:.3f} -> {a:.3f}" for d, b, a in zip(("arousal", "valence"), report["before"],
                                                                       report["after"]))
        print(f"output layer refitted to the average training listener (RMSE on the training rows: {rmse})")
    return {f"average_readout/{dim}/rmse_{when}": float(report[when][d])
            for d, dim in enumerate(("arousal", "valence")) for when in ("before", "after")}


def training_step(run: Run) -> dict:
    """One outer step: this process's share of the meta-batch, one all-reduced meta-gradient, one Adam step."""
    from dsaml.batches import task_batch
    from dsaml.meta import apply_meta_gradient, meta_gradient, trainable_parameters
    from dsaml.tasks import shard

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


def ridge_metrics(model) -> dict[str, float]:
    """The learned ridge settings (`learn_adaptation_ridge`) after the step, e.g. `ridge/level_share_valence`."""
    from dsaml.adaptation import ridge_settings
    from dsaml.modeling.modeling_dsaml import LABEL_NAMES

    if getattr(model.predictor, "ridge", None) is None:
        return {}
    with torch.no_grad():
        settings = dict(zip(("strength", "level_share"), ridge_settings(model)))
    return {f"ridge/{kind}_{dim}": float(values[i]) for kind, values in settings.items()
            for i, dim in enumerate(LABEL_NAMES)}


def evaluate(run: Run, model, store, tasks) -> list:
    """Every process scores its share of the tasks (`dsaml.evaluation`); all processes get everyone's results."""
    from accelerate.utils import gather_object

    from dsaml.evaluation import evaluate_tasks, inner_loop

    accelerator = run.accelerator
    mine = tasks[accelerator.process_index :: accelerator.num_processes]
    personalizer = inner_loop() if run.data.per_annotator else None
    with accelerator.autocast():
        results = evaluate_tasks(model, store, mine, personalizer, device=accelerator.device,
                                 progress=run.progress, references=run.data.references)
    if accelerator.num_processes > 1:
        results = gather_object(results)
    return sorted(results, key=lambda r: r.annotator)


def validate_and_select(run: Run) -> dict:
    """Validation scores; a better `select_metric` than the best so far exports the model to `best/`."""
    from dsaml.checkpoints import export_model
    from dsaml.evaluation import summarize

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
    from dsaml.checkpoints import save_checkpoint

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


def finish(run: Run) -> dict:
    """Export last/, reload best/, score it on validation and test, write results, card, plot; push."""
    from dsaml.checkpoints import export_model
    from dsaml.evaluation import summarize
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition

    args, accelerator, data, output_dir = run.args, run.accelerator, run.data, run.output_dir
    if accelerator.is_main_process:
        export_model(run.model, run.extractor, output_dir / "last")
    accelerator.wait_for_everyone()
    best_dir = output_dir / "best"
    best = DSAMLForDynamicEmotionRecognition.from_pretrained(best_dir, dtype=torch.float32).to(accelerator.device)
    final = {"best_step": run.state["best_step"], f"best/{args.select_metric}": run.state["best_score"],
             **run.state.get("average_readout", {})}
    if args.calibrate_adaptation:
        final.update(calibrate(run, best, best_dir))
    results = {"validation": evaluate(run, best, data.validation, data.final_validation_tasks)}
    for name, (store, tasks) in data.tests.items():
        if tasks:
            results[name] = evaluate(run, best, store, tasks)
    for name, partition in results.items():
        final.update(summarize(partition, name))
    if accelerator.is_main_process:
        _write_outputs(run, final, results, best.config)
    accelerator.wait_for_everyone()
    return final


def calibrate(run: Run, best, best_dir: Path) -> dict:
    """The share of the inner loop's step kept per dimension, chosen on the final report's validation tasks
    (`dsaml.calibration`; every process scores its share of them), written into `best/`'s config."""
    from accelerate.utils import gather_object
    from transformers.utils import CONFIG_NAME

    from dsaml.calibration import calibrate_share

    accelerator, tasks = run.accelerator, run.data.final_validation_tasks
    gather = gather_object if accelerator.num_processes > 1 else None
    mine = tasks[accelerator.process_index :: accelerator.num_processes]
    with accelerator.autocast():  # as the final report's `evaluate` scores them
        share, max_delay, info = calibrate_share(best, run.data.validation, mine, device=accelerator.device,
                                                 progress=run.progress, gather=gather)
    best.config.adaptation_share = list(share)
    best.config.adaptation_max_delay = int(max_delay)
    if accelerator.is_main_process:  # only the config changes: the weights stay as exported
        atomic_write_text(best_dir / CONFIG_NAME, best.config.to_json_string())
        print("adaptation share (validation listeners): " + ", ".join(
            f"{dim} {info[dim]['share']:.2f} (RMSE {info[dim]['rmse_meta_trained']:.3f} -> "
            f"{info[dim]['rmse_calibrated']:.3f}; unpersonalized {info[dim]['rmse_unpersonalized']:.3f})"
            for dim in ("arousal", "valence")) + lag_line(info))
    accelerator.wait_for_everyone()
    out = {f"calibration/{dim}/{key}": info[dim][key] for dim in ("arousal", "valence")
           for key in ("share", "rmse_unpersonalized", "rmse_meta_trained", "rmse_calibrated")}
    out.update({f"calibration/lag_{lag}/rmse": scored["rmse_calibrated"] for lag, scored in info["delays"].items()})
    return dict(out, **{"calibration/max_delay": max_delay})


def lag_line(info: dict) -> str:
    """The calibrated longest reaction lag, and what no lag scored, for the line `calibrate` prints."""
    if list(info["delays"]) == [0]:
        return ""
    lag = info["max_delay"]
    if not lag:
        return "; reaction lag up to 0 steps (a longer one did not lower the mean RMSE)"
    return (f"; reaction lag up to {lag} steps (mean RMSE {info['delays'][lag]['rmse_calibrated']:.3f}, "
            f"without a lag {info['delays'][0]['rmse_calibrated']:.3f})")


def _write_outputs(run: Run, final: dict, results: dict[str, list], config) -> None:
    """test_results.json, the model cards of best/ and last/, training_curves.png, the summary; the Hub push."""
    from dataclasses import asdict

    from dsaml.model_card import write_model_card
    from dsaml.plots import plot_training

    args, output_dir = run.args, run.output_dir
    atomic_write_text(output_dir / "test_results.json", json.dumps({
        "summary": final, **{name: [asdict(r) for r in partition] for name, partition in results.items()},
    }, indent=1, default=float))
    for folder in (output_dir / "best", output_dir / "last"):
        write_model_card(folder, config=config, metrics=final, training_args=args.to_dict(), dataset=args.dataset)
    plot_training(run.log.read(), output_dir / "training_curves.png")
    print(_summary_text(final))
    if args.push_to_hub:
        from dsaml.hub import push_model_folder

        url = push_model_folder(output_dir / "best", args.hub_model_id, private=args.hub_private)
        print(f"pushed {output_dir / 'best'} to {url}")


def _summary_text(final: dict) -> str:
    from dsaml.evaluation import format_summary

    lines = [f"best step {final['best_step']} (selected on validation annotators)"]
    # every partition `summarize` reported (its own `<split>/annotators`), validation first
    splits = sorted((k.split("/")[0] for k in final if k.count("/") == 1 and k.endswith("/annotators")),
                    key=lambda s: (s != "validation", s))
    for split in splits:
        prefix = f"{split}/"
        lines.append(format_summary({k[len(prefix):]: v for k, v in final.items() if k.startswith(prefix)},
                                    title=split))
    return "\n".join(lines)


if __name__ == "__main__":  # `accelerate launch -m dsaml.train ...`
    from dsaml.commands.train import main

    sys.exit(main())
