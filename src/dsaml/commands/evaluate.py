"""`dsaml evaluate`: per-annotator scores before and after personalization (`dsaml.evaluation`), written as a
report, or `dsaml predict` outputs scored against annotation files."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dsaml.commands.boundary import reports_errors
from dsaml.data.annotation_files import read_annotations
from dsaml.errors import AnnotationError
from dsaml.evaluation.scores import score_songs
from dsaml.evaluation.summary import summarize
from dsaml.utils.plots import plot_before_after

if TYPE_CHECKING:  # pragma: no cover
    from dsaml.evaluation.protocol import TaskResult



def write_report(results: Sequence[TaskResult], output: str | os.PathLike, meta: dict | None = None) -> dict[str, Path]:
    """`per_annotator.csv`, `report.json` (summary + records + meta) and `ccc_before_after.png` in `output`."""
    import pandas as pd

    records = [r.flat() for r in results]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "support_songs"}
                          | {"support_songs": " ".join(r["support_songs"])} for r in records])
    paths = {"csv": out / "per_annotator.csv", "json": out / "report.json", "png": out / "ccc_before_after.png"}
    frame.to_csv(paths["csv"], index=False, float_format="%.6f")
    paths["json"].write_text(json.dumps({"summary": summarize(results), "annotators": list(records),
                                         "meta": meta or {}}, indent=2, default=str), encoding="utf-8")
    plot_before_after(records, paths["png"])
    return paths


def score_prediction_files(predictions_dir: str | os.PathLike, annotations: str | os.PathLike) -> list[dict]:
    """Score `dsaml predict` CSVs against annotation files with the same stem (time/arousal/valence CSV or JSON),
    on the annotated steps."""
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
    parser.add_argument("--support_repeats", type=int, default=4,
                        help="score each annotator this many times, each with other support songs (default: 4, as "
                             "the training report)")
    parser.add_argument("--shrinkage", type=float, default=None,
                        help="slope shrinkage of the linear-recalibration reference (default: "
                             "dsaml.evaluation.recalibration.DEFAULT_SHRINKAGE)")
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


@reports_errors("dsaml evaluate")
def main(argv: list[str] | None = None) -> int:
    from dsaml.utils.files import check_output_folder

    args = build_parser().parse_args(argv)
    check_output_folder(args.output)  # before any scoring
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
    from dsaml.adaptation.config import personalization_config
    from dsaml.data.datasets import annotator_songs, dataset_metadata, dataset_root, load_pdmer
    from dsaml.data.song_store import SongStore
    from dsaml.data.tasks import evaluation_tasks
    from dsaml.evaluation.protocol import evaluate_tasks, inner_loop
    from dsaml.evaluation.references import references_for
    from dsaml.evaluation.summary import format_summary, summarize
    from dsaml.inference.loading import load_model

    model = load_model(args.model)
    root = dataset_root(args.dataset)
    rows = load_pdmer(root, "pdmer_flat", split=args.partition)
    value_range = dataset_metadata(root).get("value_range", (-1.0, 1.0))
    store = SongStore(rows, root, model.config, value_range)
    groups = annotator_songs(rows)
    if args.max_annotators:
        groups = {a: groups[a] for a in sorted(groups)[: args.max_annotators]}
    tasks = evaluation_tasks(groups, support_songs=args.support_songs, max_query_songs=args.max_query_songs,
                             seed=args.seed, support_repeats=args.support_repeats)
    personalizer = inner_loop(mode=args.mode, steps=args.steps, lr=args.lr, rank=args.rank,
                              full_modules=args.full_modules)
    results = evaluate_tasks(model, store, tasks, personalizer, progress=True, references=references_for(root),
                             shrinkage=args.shrinkage)
    meta = {"model": args.model, "dataset": args.dataset, "partition": args.partition, "mode": args.mode,
            "rank": args.rank if args.mode == "lora" else None, "support_songs": args.support_songs,
            "steps": args.steps or personalization_config(model).steps,
            "lr": args.lr or personalization_config(model).learning_rate,
            "support_repeats": args.support_repeats}
    paths = write_report(results, args.output, meta)
    print(format_summary(summarize(results), title=args.partition))
    print(f"report: {paths['csv']}, {paths['json']}, {paths['png']}")
    return 0
