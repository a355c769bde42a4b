"""`dsaml evaluate`: scores per annotator before and after personalization, and scoring of prediction files.

PDMER protocol (DSAML's task construction, `dsaml.tasks.evaluation_tasks`): for every annotator of a partition,
ONE of their songs is the support (personalization), their OTHER songs are the query. The query songs are
predicted by the unpersonalized model ("before") and by the model personalized on the support song ("after",
the meta-learned inner loop of `dsaml.personalize`), and scored with `dsaml.scores.score_songs` (RMSE, Pearson r,
CCC per song with population variances, averaged): the numbers the `evaluate` modules in `dsaml.metrics` give.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dsaml.scores import score_songs

__all__ = ["evaluate_tasks", "main", "plot_before_after", "summarize"]

SCORES = ("rmse", "pearson", "ccc")


def evaluate_tasks(model, store, tasks, *, steps: int | None = None, lr: float | None = None,
                   seed: int | None = None,
                   mode: str = "full", rank: int = 4, full_modules: Sequence[str] | None = None,
                   progress: bool = False) -> list[dict]:
    """Per-annotator scores before and after personalization.

    Args:
        model: the base model (not modified).
        store: a `dsaml.song_store.SongStore` over the partition's rows.
        tasks: `dsaml.tasks.evaluation_tasks(...)` (support and query row indices per annotator).
        seed: the inner loop's dropout seed (default: each task's own seed, as `dsaml.episodes.evaluate_tasks`,
            the training-time validation, so full-mode numbers equal the training loop's).
        mode: "full" (adapted weights) or "lora" (the rank-`rank` LoRA adapter that `dsaml personalize` saves).
    Returns: one record per annotator: `annotator`, `support_songs`, `num_query_songs`, `before/<score>`,
        `after/<score>` for every key of `score_songs`, and the support loss before/after.
    """
    from dsaml.episodes import evaluate_tasks as evaluate_episodes
    from dsaml.personalize import lora_adapter, personalize_song

    if mode not in ("full", "lora"):
        raise ValueError(f"mode must be 'full' or 'lora', got {mode!r}")

    def personalizer(base, support, task):
        result = personalize_song(base, support, user=task.annotator, steps=steps, lr=lr,
                                  seed=task.seed if seed is None else seed)
        adapted = result.model
        if mode == "lora":
            adapted = lora_adapter(base, result, rank=rank,
                                   **({} if full_modules is None else {"full_modules": full_modules}))[0]
        return adapted, {"support_loss_before": result.support_loss_before,
                         "support_loss_after": result.support_loss_after}

    records = []
    for r in evaluate_episodes(model, store, tasks, personalizer=personalizer, progress=progress):
        record = {"annotator": r.annotator, "support_songs": r.support_songs, "num_query_songs": r.num_query_songs,
                  **r.extra}
        record.update({f"before/{k}": v for k, v in r.before.items() if k != "num_songs"})
        record.update({f"after/{k}": v for k, v in r.after.items() if k != "num_songs"})
        records.append(record)
    return records


def summarize(records: Sequence[dict]) -> dict[str, float]:
    """Mean over annotators of every score (each annotator weighs the same), and how many improved."""
    keys = [k for k in records[0] if k.startswith(("before/", "after/"))]
    summary = {k: float(np.mean([r[k] for r in records])) for k in keys}
    summary["num_annotators"] = len(records)
    summary["annotators_rmse_improved"] = int(sum(r["after/rmse"] < r["before/rmse"] for r in records))
    summary["annotators_ccc_improved"] = int(sum(r["after/ccc"] > r["before/ccc"] for r in records))
    return summary


def plot_before_after(records: Sequence[dict], path: str | os.PathLike, score: str = "ccc") -> Path:
    """Scatter of each annotator's score before (x) vs after (y) personalization, and the per-annotator bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = np.array([r[f"before/{score}"] for r in records])
    after = np.array([r[f"after/{score}"] for r in records])
    names = [r["annotator"] for r in records]
    fig, (ax_s, ax_b) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 2]})
    low, high = float(min(before.min(), after.min())), float(max(before.max(), after.max()))
    pad = 0.05 * (high - low or 1)
    ax_s.plot([low - pad, high + pad], [low - pad, high + pad], color="0.6", lw=0.8)
    ax_s.scatter(before, after, color="tab:purple")
    ax_s.set_xlabel(f"{score.upper()} before personalization")
    ax_s.set_ylabel(f"{score.upper()} after personalization")
    ax_s.set_title("per annotator")
    x = np.arange(len(records))
    ax_b.bar(x - 0.2, before, 0.4, label="before")
    ax_b.bar(x + 0.2, after, 0.4, label="after")
    ax_b.set_xticks(x, names, rotation=90 if len(names) > 12 else 0, fontsize=7 if len(names) > 12 else 9)
    ax_b.set_ylabel(score.upper())
    ax_b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_report(records: Sequence[dict], output: str | os.PathLike, meta: dict | None = None) -> dict[str, Path]:
    """`per_annotator.csv`, `report.json` (summary + records + meta) and `ccc_before_after.png` in `output`."""
    import pandas as pd

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "support_songs"}
                          | {"support_songs": " ".join(r["support_songs"])} for r in records])
    paths = {"csv": out / "per_annotator.csv", "json": out / "report.json", "png": out / "ccc_before_after.png"}
    frame.to_csv(paths["csv"], index=False, float_format="%.6f")
    paths["json"].write_text(json.dumps({"summary": summarize(records), "annotators": list(records),
                                         "meta": meta or {}}, indent=2, default=str), encoding="utf-8")
    plot_before_after(records, paths["png"])
    return paths


def format_summary(summary: dict) -> str:
    lines = [f"{'score':<10}{'before':>10}{'after':>10}"]
    for dim in ("", "arousal_", "valence_"):
        for s in SCORES:
            key = f"{dim}{s}"
            lines.append(f"{key:<16}{summary[f'before/{key}']:>10.4f}{summary[f'after/{key}']:>10.4f}")
    lines.append(f"annotators: {summary['num_annotators']}; RMSE improved for {summary['annotators_rmse_improved']}, "
                 f"CCC improved for {summary['annotators_ccc_improved']}")
    return "\n".join(lines)


def score_prediction_files(predictions_dir: str | os.PathLike, annotations: str | os.PathLike) -> list[dict]:
    """Score `dsaml predict` CSVs against annotation files with the same stem (time/arousal/valence CSV or JSON),
    on the annotated steps."""
    from dsaml.examples import AnnotationError
    from dsaml.personalize import read_annotations

    import pandas as pd

    ann_dir = Path(annotations)
    records = []
    for pred_path in sorted(Path(predictions_dir).glob("*.csv")):
        candidates = [ann_dir / f"{pred_path.stem}{s}" for s in (".csv", ".json")]
        ann_path = next((c for c in candidates if c.is_file()), None)
        if ann_path is None:
            continue
        pred = pd.read_csv(pred_path)
        ann = read_annotations(ann_path)
        step = float(pred["time_seconds"].iloc[1] - pred["time_seconds"].iloc[0]) if len(pred) > 1 else 0.5
        first = int(round(ann["start_seconds"] / step))
        n = len(ann["arousal"])
        if first + n > len(pred) + 1:
            raise AnnotationError(f"{ann_path}: the annotation runs to {(first + n) * step:.1f} s but the prediction "
                                  f"{pred_path} covers {len(pred) * step:.1f} s")
        n = min(n, len(pred) - first)
        p = pred[["arousal", "valence"]].to_numpy()[first:first + n]
        r = np.stack([ann["arousal"][:n], ann["valence"][:n]], axis=-1)
        scores = score_songs([p], [r])
        records.append({"song": pred_path.stem, **{k: v for k, v in scores.items() if k != "num_songs"}})
    if not records:
        raise FileNotFoundError(f"no prediction in {predictions_dir} has an annotation with the same name in {ann_dir}")
    return records


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsaml evaluate",
        description="Per-annotator scores before vs after personalization (one support song per annotator), "
                    "or scores of `dsaml predict` outputs against annotation files.")
    parser.add_argument("--model", help="model folder (save_pretrained) or Hub repo id")
    parser.add_argument("--dataset", default="synthetic:small", help="dataset folder, Hub repo or synthetic:<size>")
    parser.add_argument("--partition", default="test", help="pdmer_flat split to evaluate (default: test)")
    parser.add_argument("--output", default="report", help="report folder")
    parser.add_argument("--support_songs", type=int, default=1)
    parser.add_argument("--max_query_songs", type=int, default=None)
    parser.add_argument("--max_annotators", type=int, default=None, help="evaluate only the first N annotators")
    parser.add_argument("--mode", choices=("full", "lora"), default="full",
                        help="personalized weights to score: the full adapted model or its LoRA adapter")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--full_modules", nargs="*", default=None, metavar="PATTERN",
                        help="lora mode: non-Linear modules stored whole (see dsaml personalize --help)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0, help="seed of the support/query split per annotator")
    parser.add_argument("--predictions", default=None, help="folder of `dsaml predict` CSVs to score instead")
    parser.add_argument("--annotations", default=None, help="with --predictions: folder of <stem>.csv/.json curves")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.predictions:
        if not args.annotations:
            print("dsaml evaluate: error: --predictions needs --annotations", file=sys.stderr)
            return 2
        import pandas as pd

        records = score_prediction_files(args.predictions, args.annotations)
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(records).to_csv(out / "per_song.csv", index=False, float_format="%.6f")
        mean = {k: float(np.mean([r[k] for r in records])) for k in records[0] if k != "song"}
        (out / "report.json").write_text(json.dumps({"summary": mean, "songs": records}, indent=2), encoding="utf-8")
        print("\n".join(f"{k:<16}{v:>10.4f}" for k, v in mean.items()))
        return 0
    if not args.model:
        print("dsaml evaluate: error: give --model (or --predictions with --annotations)", file=sys.stderr)
        return 2
    from dsaml.data import annotator_songs, dataset_metadata, dataset_root, load_pdmer
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition
    from dsaml.song_store import SongStore
    from dsaml.tasks import evaluation_tasks

    model = DSAMLForDynamicEmotionRecognition.from_pretrained(args.model).eval()
    root = dataset_root(args.dataset)
    rows = load_pdmer(root, "pdmer_flat", split=args.partition)
    value_range = dataset_metadata(root).get("value_range", (-1.0, 1.0))
    store = SongStore(rows, root, model.config, value_range)
    tasks = evaluation_tasks(annotator_songs(rows), support_songs=args.support_songs,
                             max_query_songs=args.max_query_songs, seed=args.seed)
    tasks = tasks[: args.max_annotators] if args.max_annotators else tasks
    records = evaluate_tasks(model, store, tasks, steps=args.steps, lr=args.lr, mode=args.mode,
                             rank=args.rank, full_modules=args.full_modules, progress=True)
    meta = {"model": args.model, "dataset": args.dataset, "partition": args.partition, "mode": args.mode,
            "rank": args.rank if args.mode == "lora" else None, "support_songs": args.support_songs,
            "steps": args.steps or model.config.adaptation_steps, "lr": args.lr or model.config.adaptation_lr}
    paths = write_report(records, args.output, meta)
    print(format_summary(summarize(records)))
    print(f"report: {paths['csv']}, {paths['json']}, {paths['png']}")
    return 0
