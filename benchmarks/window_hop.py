"""Accuracy against cost of the sliding-window hop: how far apart windows can start before the blended curve
gets worse.

For every listener of a partition of the synthetic PDMER set (`pdmer_flat`, default `validation`: the hop is
chosen there), the unpersonalized model predicts each of the listener's songs whole (`evaluation.predict_songs`,
the one prediction path) at every hop, and the curves are scored against that listener's labels
(`scores.score_songs`: RMSE, Pearson r and CCC per song, averaged per listener, then over listeners).

Cost per audio second is given two ways: `windows_per_step` (window forwards per step, counted; 1 / window is
the floor, every step through the network once) and the measured model seconds per audio second on the
partition's songs (features precomputed, so this is the network alone; the local CNN runs once per step at
every hop). `cost_ratio_*` divides both by the floor's (hop = window). The reference is a hop of window / 6
(rounded down). The chosen hop is the largest that keeps every score (RMSE, arousal and valence RMSE, Pearson
r, CCC) within `--keep` (0.001) of the reference's: no measurable loss, rather than the largest the acceptance
tolerance (`--tolerance`, 0.005 RMSE) would admit, which also reports whether each hop passes it.

    python benchmarks/window_hop.py --model outputs/synthetic_small/best                      # validation curve
    python benchmarks/window_hop.py --model outputs/synthetic_small/best --partition test --hops 3 10
"""

from __future__ import annotations

import time

import common
import numpy as np


def listener_songs(model, dataset: str, partition: str):
    """{annotator: [AlignedSong]} of every listener of `partition` (all their songs)."""
    import datasets

    from dsaml.data.datasets import annotator_songs, dataset_metadata, dataset_root, load_pdmer
    from dsaml.data.song_store import SongStore

    datasets.disable_progress_bars()
    root = dataset_root(dataset)
    rows = load_pdmer(root, "pdmer_flat", split=partition)
    store = SongStore(rows, root, model.config, dataset_metadata(root).get("value_range", (-1.0, 1.0)))
    return {a: store.songs(indices) for a, indices in sorted(annotator_songs(rows).items())}


def score_hop(model, by_listener, window: int, hop: int) -> dict:
    """Mean over listeners of their songs' scores at `hop`; each distinct song (same audio, same steps) is
    predicted once and timed."""
    from dsaml.evaluation.scores import score_songs
    from dsaml.inference.songs import predict_songs
    from dsaml.modeling.modeling_dsaml import window_starts

    cache, seconds, windows, steps = {}, 0.0, 0, 0
    per_listener = []
    for songs in by_listener.values():
        predictions = []
        for song in songs:
            key = (song.song_id, song.start_step, song.num_steps)
            if key not in cache:
                start = time.perf_counter()
                cache[key] = predict_songs(model, [song], window, hop)[0]
                seconds += time.perf_counter() - start
                windows += len(window_starts(song.num_steps, window, hop))
                steps += song.num_steps
            predictions.append(cache[key])
        per_listener.append(score_songs(predictions, [s.labels.numpy() for s in songs]))
    keys = [k for k in per_listener[0] if k != "num_songs"]
    audio_seconds = steps * model.config.step_seconds
    return {"hop_steps": hop, **{k: float(np.mean([r[k] for r in per_listener])) for k in keys},
            "windows_per_step": windows / steps, "model_seconds_per_audio_second": seconds / audio_seconds,
            "songs": len(cache), "audio_seconds": audio_seconds}


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a trained model folder, e.g. outputs/synthetic_small/best")
    p.add_argument("--dataset", default="synthetic:small")
    p.add_argument("--partition", default="validation")
    p.add_argument("--hops", type=int, nargs="+", default=None, help="default: 1 .. window")
    p.add_argument("--tolerance", type=float, default=0.005, help="acceptance: RMSE within this of the reference")
    p.add_argument("--keep", type=float, default=0.001, help="choice: every score within this of the reference")
    args = p.parse_args()
    common.setup(args.threads)
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition

    model = DSAMLForDynamicEmotionRecognition.from_pretrained(args.model).eval()
    window = model.config.window_steps
    hops = args.hops or sorted({1, 2, 3, 4, 5, window // 3, window // 2, window})
    by_listener = listener_songs(model, args.dataset, args.partition)
    predict_warm = next(iter(by_listener.values()))[:1]
    score_hop(model, {"warm-up": predict_warm}, window, window)
    curve = [score_hop(model, by_listener, window, hop) for hop in hops]
    floor = next((c for c in curve if c["hop_steps"] == window), None)
    for c in curve:
        c["cost_ratio_windows"] = c["windows_per_step"] * window
        if floor:
            c["cost_ratio_measured"] = c["model_seconds_per_audio_second"] / floor["model_seconds_per_audio_second"]
        print(f"  hop {c['hop_steps']:3d}: RMSE {c['rmse']:.4f} (A {c['arousal_rmse']:.4f}, V {c['valence_rmse']:.4f})"
              f"  CCC {c['ccc']:.4f}  r {c['pearson']:.4f}  windows/step {c['windows_per_step']:.3f} "
              f"(x{c['cost_ratio_windows']:.2f} floor)  model {c['model_seconds_per_audio_second'] * 1e3:.2f} ms "
              f"per audio s", flush=True)
    reference_hop = max(1, window // 6)
    reference = next((c for c in curve if c["hop_steps"] == reference_hop), None)
    chosen = None
    if reference is not None:
        scores = ("rmse", "arousal_rmse", "valence_rmse", "pearson", "ccc")
        for c in curve:
            c["rmse_within_tolerance"] = c["rmse"] <= reference["rmse"] + args.tolerance
            c["scores_within_keep"] = all(abs(c[k] - reference[k]) <= args.keep for k in scores)
        chosen = max((c for c in curve if c["scores_within_keep"]), key=lambda c: c["hop_steps"])["hop_steps"]
        print(f"  reference hop {reference_hop} (window / 6): RMSE {reference['rmse']:.4f}; largest hop with every "
              f"score within {args.keep}: {chosen}; within the RMSE tolerance {args.tolerance}: "
              f"{[c['hop_steps'] for c in curve if c['rmse_within_tolerance']]}")
    figures = {"model": args.model, "dataset": args.dataset, "partition": args.partition,
               "listeners": len(by_listener), "window_steps": window, "reference_hop_steps": reference_hop,
               "tolerance": args.tolerance, "keep": args.keep, "chosen_hop_steps": chosen, "curve": curve}
    name = "window_hop" if args.partition == "validation" else f"window_hop_{args.partition}"
    common.write_result(name, figures, args=args, path=args.output)


if __name__ == "__main__":
    main()
