"""Accuracy on the synthetic PDMER set: unpersonalized vs 1-shot personalized, per annotator, mean and spread.

Protocol (`dsaml evaluate`'s): for every held-out listener of the `pdmer_flat` test partition (never seen in
meta-training), one support song, the rest (up to `--max-query-songs`) as query songs; scores (CCC, Pearson,
RMSE, averaged over arousal and valence, per song then per annotator) of the model as is ("before") and of
the model adapted on the support song with the model config's `adaptation_steps` / `adaptation_lr` ("after").

It needs a trained model:

    dsaml train --config synthetic_small --output_dir outputs/synthetic_small
    python benchmarks/accuracy.py --model outputs/synthetic_small/best
    python benchmarks/accuracy.py --model outputs/synthetic_small/best --partition test_unseen
    python benchmarks/accuracy.py --model outputs/synthetic_long/best --label long   # the longer config
    python benchmarks/accuracy.py --model outputs/synthetic_small/best --quick   # 3 annotators, 2 query songs

`--untrained` evaluates a randomly initialised small model instead (a smoke test of the script, not a figure).
"""

from __future__ import annotations

import sys

import common
import numpy as np

SCORES = ("ccc", "pearson", "rmse")


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a trained model folder (save_pretrained), e.g. outputs/synthetic_small/best")
    p.add_argument("--dataset", default="synthetic:small", help="dataset folder, Hub repo or synthetic:<size>")
    p.add_argument("--partition", default="test")
    p.add_argument("--max-query-songs", type=int, default=0,
                   help="query songs per annotator (default 0 = all of the annotator's other songs, as the training "
                        "report)")
    p.add_argument("--support-repeats", type=int, default=4,
                   help="support songs per annotator, one task each (default 4, as the training report)")
    p.add_argument("--max-annotators", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--untrained", action="store_true", help="random small model (smoke test only)")
    p.add_argument("--label", default=None,
                   help="which config trained the model, e.g. `long`: results go to accuracy_<label>[_<partition>].json "
                        "(default accuracy[_<partition>].json, the README main job's)")
    args = p.parse_args()
    if not args.model and not args.untrained:
        print("accuracy.py needs a trained model: run\n"
              "  dsaml train --config synthetic_small --output_dir outputs/synthetic_small\n"
              "then\n  python benchmarks/accuracy.py --model outputs/synthetic_small/best", file=sys.stderr)
        sys.exit(2)
    common.setup(args.threads)
    if args.quick:
        args.max_annotators = args.max_annotators or 3
        args.max_query_songs = 2
    model, results = evaluate(args)
    figures = summarize_figures(args, model, results)
    from dsaml.evaluation.summary import format_summary

    print(format_summary(figures["summary"], title=args.partition))
    common.write_result(result_name(args), figures, args=args, path=args.output)


def result_name(args) -> str:
    if args.untrained:
        return "accuracy_untrained_smoke"
    parts = ["accuracy", args.label, None if args.partition == "test" else args.partition]
    return "_".join(x for x in parts if x)


def evaluate(args):
    """The model and its per-annotator results through `dsaml.evaluation` (the protocol `dsaml evaluate` runs)."""
    import datasets

    from dsaml.data.datasets import annotator_songs, dataset_metadata, dataset_root, load_pdmer
    from dsaml.data.song_store import SongStore
    from dsaml.data.tasks import evaluation_tasks
    from dsaml.evaluation.protocol import evaluate_tasks, inner_loop
    from dsaml.evaluation.references import references_for
    from dsaml.inference.loading import load_model

    datasets.disable_progress_bars()
    model = common.build_model("small").eval() if args.untrained else load_model(args.model)
    root = dataset_root(args.dataset)
    rows = load_pdmer(root, "pdmer_flat", split=args.partition)
    store = SongStore(rows, root, model.config, dataset_metadata(root).get("value_range", (-1.0, 1.0)))
    groups = annotator_songs(rows)
    if args.max_annotators:
        groups = {a: groups[a] for a in sorted(groups)[: args.max_annotators]}
    tasks = evaluation_tasks(groups, support_songs=1, max_query_songs=args.max_query_songs or None, seed=args.seed,
                             support_repeats=args.support_repeats)
    return model, evaluate_tasks(model, store, tasks, inner_loop(), references=references_for(root))


def summarize_figures(args, model, results) -> dict:
    """Mean, spread and range of every score before / after, and the per-annotator rows."""
    from dsaml.adaptation.config import personalization_config
    from dsaml.evaluation.summary import summarize

    records = [r.flat() for r in results]
    per_task = [
        {"annotator": r["annotator"], "support_songs": r["support_songs"], "num_query_songs": r["num_query_songs"],
         **{f"{stage}/{s}": r[f"{stage}/{s}"] for stage in ("before", "after") for s in SCORES}}
        for r in records
    ]
    spread = {}
    for stage in ("before", "after"):
        for s in SCORES:
            values = np.array([r[f"{stage}/{s}"] for r in records])
            spread[f"{stage}/{s}"] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                                      "min": float(values.min()), "max": float(values.max())}
    summary = summarize(results)
    return {
        "model": args.model or "untrained small model (smoke test)", "label": args.label, "dataset": args.dataset,
        "partition": args.partition, "annotators": summary["annotators"], "tasks": len(records),
        "support_repeats": args.support_repeats, "summary": summary,
        "personalization": personalization_config(model).to_dict(),
        "max_query_songs": args.max_query_songs, "scores": spread,
        "annotators_ccc_improved": summary["annotators_ccc_improved"],
        "annotators_rmse_improved": summary["annotators_rmse_improved"],
        "per_task": per_task,
    }


if __name__ == "__main__":
    main()
