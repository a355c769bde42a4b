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

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
import yaml

from dsaml.files import atomic_path, atomic_write_text
from dsaml.training_args import TrainingArguments, load_arguments

logger = logging.getLogger("dsaml.train")


class TrainingData:
    """The training rows, the task sampler, and the fixed validation and test tasks."""

    def __init__(self, args: TrainingArguments, config, accelerator) -> None:
        from dsaml.data import annotator_songs, dataset_metadata, dataset_root, load_pdmer
        from dsaml.song_store import SongStore
        from dsaml.tasks import TaskSampler, evaluation_tasks, validation_split

        with accelerator.main_process_first():  # builds the synthetic set / downloads once
            self.root = dataset_root(args.dataset)
            splits = load_pdmer(self.root, args.data_config)
        value_range = dataset_metadata(self.root).get("value_range", (-1.0, 1.0))
        train_rows = splits["train"]
        groups = annotator_songs(train_rows)
        personalize = args.data_config == "pdmer_flat"
        if personalize and "validation" in splits:  # the dataset's own held-out listeners (stratified, fixed)
            train_groups = groups
            self.validation_rows = splits["validation"]
            self.validation_tasks = evaluation_tasks(annotator_songs(self.validation_rows),
                                                     support_songs=args.support_songs,
                                                     max_query_songs=args.validation_max_query_songs, seed=args.seed)
        elif personalize:
            split = validation_split(groups, validation_annotators=args.validation_annotators,
                                     validation_songs=args.validation_songs, support_songs=args.support_songs,
                                     max_query_songs=args.validation_max_query_songs, seed=args.seed)
            train_groups, self.validation_tasks = split.train_groups, split.tasks
            self.validation_rows = train_rows
        else:  # dmer: averaged labels, the release's validation split, no personalization
            train_groups = groups
            self.validation_rows = splits["validation"]
            self.validation_tasks = self._whole_split_tasks(self.validation_rows, args.validation_max_query_songs)
        self.personalize = personalize
        self.sampler = TaskSampler(train_groups, support_songs=args.support_songs, query_songs=args.query_songs,
                                   tasks_per_step=args.tasks_per_step, seed=args.seed)
        self.train = SongStore(train_rows, self.root, config, value_range)
        self.validation = (self.train if self.validation_rows is train_rows
                           else SongStore(self.validation_rows, self.root, config, value_range))
        self.test = None
        self.test_tasks = []
        if args.evaluate_test and "test" in splits:
            test_rows = splits["test"]
            self.test = SongStore(test_rows, self.root, config, value_range)
            if personalize:
                test_groups = annotator_songs(test_rows)
                usable = {a: r for a, r in test_groups.items() if len(r) > args.support_songs}
                if len(usable) < len(test_groups):
                    logger.warning("test partition: %d annotator(s) with <= %d songs cannot be personalized and "
                                   "are not scored", len(test_groups) - len(usable), args.support_songs)
                self.test_tasks = evaluation_tasks(usable, support_songs=args.support_songs,
                                                   max_query_songs=args.test_max_query_songs, seed=args.seed)
            else:
                self.test_tasks = self._whole_split_tasks(test_rows, args.test_max_query_songs)

    @staticmethod
    def _whole_split_tasks(rows, max_songs):
        from dsaml.tasks import Task

        indices = tuple(range(len(rows)))[:max_songs]
        return [Task("average", (), indices, 0, 0)] if indices else []

    def preload(self, progress: bool) -> None:
        """Decode every song now: bad audio or annotations fail before the first step, naming the file."""
        rows = sorted({i for rows in self.sampler.groups.values() for i in rows})
        self.train.preload(rows, progress=progress)
        for task in self.validation_tasks:
            self.validation.songs(task.support + task.query)
        if self.test is not None:
            for task in self.test_tasks:
                self.test.songs(task.support + task.query)


def build_model(args: TrainingArguments):
    from dsaml.modeling import DSAMLConfig, DSAMLForDynamicEmotionRecognition

    if args.init_from:
        model = DSAMLForDynamicEmotionRecognition.from_pretrained(args.init_from, dtype=torch.float32)
        for key, value in args.model.items():
            setattr(model.config, key, value)
        model.config.validate_dsaml()
        return model
    return DSAMLForDynamicEmotionRecognition(DSAMLConfig(**args.model))


def run_evaluation(model, store, tasks, accelerator, personalize: bool, progress: bool):
    """Every process scores its share of the tasks; all processes get everyone's results."""
    from accelerate.utils import gather_object

    from dsaml.episodes import evaluate_tasks

    mine = tasks[accelerator.process_index :: accelerator.num_processes]
    with accelerator.autocast():
        results = evaluate_tasks(model, store, mine, personalize=personalize,
                                 progress=progress and accelerator.is_main_process, device=accelerator.device)
    if accelerator.num_processes > 1:
        results = gather_object(results)
    return sorted(results, key=lambda r: r.annotator)


class MetricsLog:
    """metrics.jsonl (main process), resumable: lines after the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        if enabled and path.is_file():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, step: int, values: dict) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


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


def train(args: TrainingArguments) -> dict:
    """Run (or resume) training; returns the final metrics (validation of the best model, test)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    from dsaml.checkpoints import export_model, latest_checkpoint, load_checkpoint, save_checkpoint
    from dsaml.episodes import summarize, task_batch
    from dsaml.meta import apply_meta_gradient, meta_gradient, trainable_parameters
    from dsaml.modeling import DSAMLFeatureExtractor
    from dsaml.tasks import shard

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
    config = model.config
    extractor = DSAMLFeatureExtractor.from_model_config(config)
    data = TrainingData(args, config, accelerator)
    data.preload(progress)
    optimizer = torch.optim.Adam(trainable_parameters(model).values(), lr=args.learning_rate,
                                 weight_decay=args.weight_decay)
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
    log = MetricsLog(output_dir / "metrics.jsonl", state["step"], accelerator.is_main_process)
    greater = args.select_greater_is_better
    window = config.window_steps

    def validate(step: int) -> dict:
        results = run_evaluation(model, data.validation, data.validation_tasks, accelerator, data.personalize,
                                 progress)
        return summarize(results, "validation") if results else {}

    def is_better(score: float) -> bool:
        best = state["best_score"]
        return best is None or (score > best if greater else score < best)

    params = trainable_parameters(model)
    bar = tqdm(total=args.max_steps, initial=state["step"], desc="meta-training", disable=not progress,
               dynamic_ncols=True)
    model.train()
    try:
        while state["step"] < args.max_steps:
            step = state["step"]
            started = time.perf_counter()
            tasks = shard(data.sampler.sample(step), accelerator.process_index, accelerator.num_processes)
            batches = [task_batch(data.train, t, window).to(accelerator.device) for t in tasks]
            with accelerator.autocast():
                grads, stats = meta_gradient(model, batches, algorithm=args.algorithm)
            apply_meta_gradient(model, grads, accelerator)
            max_norm = args.max_grad_norm if args.max_grad_norm else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss = accelerator.reduce(torch.tensor(stats["query_loss"], device=accelerator.device), "mean")
            state["step"] = step + 1
            elapsed = time.perf_counter() - started
            metrics = {"train/query_loss": float(loss), "train/grad_norm": float(grad_norm),
                       "train/tasks_per_second": args.tasks_per_step / elapsed}
            if state["step"] % args.validation_every == 0 or state["step"] == args.max_steps:
                metrics.update(validate(state["step"]))
                score = metrics.get(args.select_metric)
                if score is None:
                    raise KeyError(f"select_metric {args.select_metric!r} is not among the validation metrics "
                                   f"{sorted(k for k in metrics if k.startswith('validation/'))}")
                if is_better(score):
                    state["best_score"], state["best_step"] = score, state["step"]
                    if accelerator.is_main_process:
                        export_model(model, extractor, output_dir / "best")
                if accelerator.is_main_process:
                    bar.write(_validation_line(state["step"], metrics))
            log.write(state["step"], metrics)
            if trackers:
                accelerator.log(metrics, step=state["step"])
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.3f}")
            if state["step"] % args.checkpoint_every == 0 or state["step"] == args.max_steps:
                save_checkpoint(accelerator, model, state, output_dir, args.keep_checkpoints)
    except KeyboardInterrupt:
        if accelerator.num_processes == 1 and state["step"] > 0:
            path = save_checkpoint(accelerator, model, state, output_dir, args.keep_checkpoints)
            print(f"\ninterrupted: saved {path}; rerun the same command to resume", file=sys.stderr)
        raise
    finally:
        bar.close()

    final = _finish(args, accelerator, model, extractor, data, state, log, progress)
    accelerator.end_training()
    return final


def _validation_line(step: int, metrics: dict) -> str:
    parts = [f"step {step}"]
    for stage in ("before", "after"):
        keys = [f"validation/{stage}/{k}" for k in ("ccc", "pearson", "rmse")]
        if all(k in metrics for k in keys):
            ccc, pcc, rmse = (metrics[k] for k in keys)
            parts.append(f"{stage} personalization: CCC {ccc:.3f}  PCC {pcc:.3f}  RMSE {rmse:.3f}")
    return " | ".join(parts)


def _finish(args, accelerator, model, extractor, data, state, log, progress) -> dict:
    """Export last/, reload best/, score it on validation and test, write results, card, plot; push."""
    from dsaml.checkpoints import export_model
    from dsaml.episodes import summarize
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition

    output_dir = Path(args.output_dir)
    if accelerator.is_main_process:
        export_model(model, extractor, output_dir / "last")
    accelerator.wait_for_everyone()
    best_dir = output_dir / "best"
    best = DSAMLForDynamicEmotionRecognition.from_pretrained(best_dir, dtype=torch.float32).to(accelerator.device)
    final = {"best_step": state["best_step"], f"best/{args.select_metric}": state["best_score"]}
    validation = run_evaluation(best, data.validation, data.validation_tasks, accelerator, data.personalize, progress)
    final.update(summarize(validation, "validation"))
    test_results = []
    if data.test is not None and data.test_tasks:
        test_results = run_evaluation(best, data.test, data.test_tasks, accelerator, data.personalize, progress)
        final.update(summarize(test_results, "test"))
    if accelerator.is_main_process:
        _write_json(output_dir / "test_results.json", {
            "summary": final,
            "validation": [r.__dict__ for r in validation],
            "test": [r.__dict__ for r in test_results],
        })
        from dsaml.model_card import write_model_card

        for folder in (best_dir, output_dir / "last"):
            write_model_card(folder, config=best.config, metrics=final, training_args=args.to_dict(),
                             dataset=args.dataset)
        _plot_training(log.read(), output_dir / "training_curves.png")
        print(_summary_text(final))
        if args.push_to_hub:
            from dsaml.hub import push_model_folder

            url = push_model_folder(best_dir, args.hub_model_id, private=args.hub_private)
            print(f"pushed {best_dir} to {url}")
    accelerator.wait_for_everyone()
    return final


def _summary_text(final: dict) -> str:
    lines = [f"best step {final['best_step']} (selected on validation annotators)"]
    for split in ("validation", "test"):
        if f"{split}/before/ccc" not in final:
            continue
        lines.append(f"{split} ({final[f'{split}/annotators']} annotators):")
        for stage in ("before", "after"):
            c, p, r = (final[f"{split}/{stage}/{k}"] for k in ("ccc", "pearson", "rmse"))
            lines.append(f"  {stage:6s} personalization  CCC {c:.3f}  PCC {p:.3f}  RMSE {r:.3f}")
    return "\n".join(lines)


def _write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, default=float))


def _plot_training(records: list[dict], path: Path) -> None:
    """Query loss over steps, and validation CCC / RMSE before and after personalization."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    steps = [r["step"] for r in records]
    axes[0].plot(steps, [r["train/query_loss"] for r in records], lw=1)
    axes[0].set(title="meta-training query loss", xlabel="outer step")
    for ax, key in zip(axes[1:], ("ccc", "rmse")):
        for stage, style in (("before", "--"), ("after", "-")):
            points = [(r["step"], r[f"validation/{stage}/{key}"]) for r in records if f"validation/{stage}/{key}" in r]
            if points:
                ax.plot(*zip(*points), style, marker="o", label=f"{stage} personalization")
        ax.set(title=f"validation {key.upper()}", xlabel="outer step")
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsaml train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="synthetic_small",
                        help="a shipped config name (synthetic_small, synthetic_tiny, deam_pdmer, deam_dmer) or a YAML "
                             "file (default: synthetic_small)")
    parser.add_argument("--dataset", help="dataset folder, Hub dataset id or synthetic[:size[:seed]]")
    parser.add_argument("--output_dir", "--output-dir")
    parser.add_argument("--max_steps", "--max-steps", type=int)
    parser.add_argument("--algorithm", choices=("fomaml", "maml", "reptile", "plain"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--init_from", "--init-from", help="start from a saved model (folder or Hub id)")
    parser.add_argument("--resume_from_checkpoint", "--resume-from-checkpoint",
                        help="'auto' (default: latest in output_dir), a checkpoint folder, or 'none'")
    parser.add_argument("--push_to_hub", "--push-to-hub", action="store_true")
    parser.add_argument("--hub_model_id", "--hub-model-id")
    parser.add_argument("--hub_private", "--hub-private", action="store_true")
    parser.add_argument("--no_progress", "--no-progress", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any training argument (YAML value), e.g. --set tasks_per_step=8 "
                             "--set model.adaptation_steps=4")
    return parser


def parse_overrides(ns: argparse.Namespace) -> dict:
    overrides: dict = {}
    for name in ("dataset", "output_dir", "max_steps", "algorithm", "seed", "init_from", "hub_model_id"):
        if getattr(ns, name) is not None:
            overrides[name] = getattr(ns, name)
    if ns.resume_from_checkpoint is not None:
        overrides["resume_from_checkpoint"] = None if ns.resume_from_checkpoint == "none" else ns.resume_from_checkpoint
    if ns.push_to_hub:
        overrides["push_to_hub"] = True
    if ns.hub_private:
        overrides["hub_private"] = True
    if ns.no_progress:
        overrides["progress"] = False
    for item in ns.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        value = yaml.safe_load(value)
        if key.startswith("model."):
            overrides.setdefault("model", {})[key[len("model."):]] = value
        else:
            overrides[key] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("accelerate", "matplotlib", "datasets", "filelock"):  # keep the console for progress and scores
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args = load_arguments(ns.config, parse_overrides(ns))
    except (ValueError, FileNotFoundError) as exc:
        print(f"dsaml train: {exc}", file=sys.stderr)
        return 2
    from dsaml.stages import run_stages

    run_stages(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
