"""DMER: the unpersonalized model against each held-out song's averaged annotation (`dmer` config).

For any dataset folder with a `dmer` config (synthetic, DEAM, PMEmo, VGMIDI): the model as is on the
partition's songs beside a constant at the training songs' mean. RMSE (per song, then the mean over songs),
Pearson r over all steps of all songs (pooled: level differences between songs count) and within songs (the
mean of per-song r), CCC; each with a 95 % bootstrap interval over songs. On `synthetic:small` the `test` split
holds the 16 songs no one rated in meta-training (averaged over their `test_unseen` listeners) and `validation`
a seeded tenth of the known songs (averaged over the training listeners): choose settings on `validation`.

    python benchmarks/dmer.py --model outputs/synthetic_small/best --dataset synthetic:small --partition validation
    python benchmarks/dmer.py --model outputs/synthetic_small/best --dataset synthetic:small   # test, report once
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import common
import numpy as np

DIMENSIONS = ("arousal", "valence")
RESAMPLES = 2000


def bootstrap_ci(items: Sequence, statistic: Callable[[list], float] = np.mean, *, resamples: int = RESAMPLES,
                 seed: int = 0, level: float = 0.95) -> dict:
    """`statistic` of `items` and its percentile bootstrap interval (items resampled with replacement)."""
    items = list(items)
    draws_of = np.random.default_rng(seed).integers(0, len(items), (resamples, len(items)))
    if statistic is np.mean:  # the common case, vectorized
        draws = np.asarray(items, dtype=np.float64)[draws_of].mean(axis=1)
    else:
        draws = [statistic([items[i] for i in row]) for row in draws_of]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return {"mean": float(statistic(items)), "low": float(low), "high": float(high), "n": len(items)}


def pooled_pearson(pieces: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """Pearson r of (prediction, reference) over every step of every piece."""
    p = np.concatenate([x for x, _ in pieces]).astype(np.float64)
    t = np.concatenate([y for _, y in pieces]).astype(np.float64)
    if p.std() == 0 or t.std() == 0:
        return 0.0  # a constant: no linear agreement (as `dsaml.evaluation.scores.curve_scores`)
    return float(np.corrcoef(p, t)[0, 1])


def dmer_figures(args, model, root) -> dict:
    """The model as is and the training mean on the partition's songs (`args.partition`), against their
    averaged labels; intervals from `args.resamples` bootstrap draws over songs."""
    from dsaml.data.datasets import dataset_metadata, load_dmer
    from dsaml.data.song_store import SongStore
    from dsaml.evaluation.scores import curve_scores
    from dsaml.inference.songs import predict_songs

    splits = load_dmer(root)
    train = splits["train"]
    constant = [float(np.concatenate(train[d]).mean()) for d in DIMENSIONS]  # over every step of every piece
    rows = splits[args.partition]
    store = SongStore(rows, root, model.config, dataset_metadata(root).get("value_range", (-1.0, 1.0)))
    songs = store.songs(range(len(rows)))
    predictions = predict_songs(model, songs, model.config.window_steps, model.config.hop_steps)
    out = {"pieces": len(songs), "steps": int(sum(s.num_steps for s in songs)),
           "constant": dict(zip(DIMENSIONS, constant))}
    for i, d in enumerate(DIMENSIONS):
        pairs = [(p[:, i], s.labels[:, i].numpy()) for p, s in zip(predictions, songs)]
        model_scores = [curve_scores(p, t) for p, t in pairs]
        flat_scores = [curve_scores(np.full_like(t, constant[i]), t) for _, t in pairs]
        ci = dict(resamples=args.resamples, seed=args.seed)
        out[d] = {
            "model_rmse": bootstrap_ci([s["rmse"] for s in model_scores], **ci),
            "constant_rmse": bootstrap_ci([s["rmse"] for s in flat_scores], **ci),
            "rmse_model_minus_constant": bootstrap_ci(
                [m["rmse"] - c["rmse"] for m, c in zip(model_scores, flat_scores)], **ci),
            "pooled_pearson": bootstrap_ci(pairs, pooled_pearson, **ci),
            "within_piece_pearson": bootstrap_ci([s["pearson"] for s in model_scores], **ci),
            "model_ccc": bootstrap_ci([s["ccc"] for s in model_scores], **ci),
        }
    return out


def format_dmer(dmer: dict, partition: str) -> str:
    lines = [f"DMER, {partition} songs ({dmer['pieces']}, {dmer['steps']} steps) vs their averaged labels:"]
    for d in DIMENSIONS:
        f = dmer[d]
        lines.append(f"  {d:<8} RMSE model {interval(f['model_rmse'])} constant {interval(f['constant_rmse'])}  "
                     f"pooled r {interval(f['pooled_pearson'])}  within-song r {interval(f['within_piece_pearson'])}")
    return "\n".join(lines)


def interval(ci: dict, digits: int = 3) -> str:
    return f"{ci['mean']:.{digits}f} [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a trained model folder, e.g. outputs/synthetic_small/best")
    p.add_argument("--dataset", default="synthetic:small", help="a dataset folder or synthetic:<size>")
    p.add_argument("--partition", default="test", choices=("test", "validation"))
    p.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    common.setup(args.threads)
    import datasets

    from dsaml.data.datasets import dataset_root
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition

    datasets.disable_progress_bars()
    model = DSAMLForDynamicEmotionRecognition.from_pretrained(args.model).eval()
    root = dataset_root(args.dataset)
    figures = {"model": args.model, "dataset": args.dataset, "partition": args.partition,
               "dmer": dmer_figures(args, model, root)}
    print(format_dmer(figures["dmer"], args.partition))
    name = "dmer" if args.partition == "test" else f"dmer_{args.partition}"
    common.write_result(name, figures, args=args, path=args.output)


if __name__ == "__main__":
    main()
