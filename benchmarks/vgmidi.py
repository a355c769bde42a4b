"""Real listeners (VGMIDI): 1-shot personalization of held-out listeners, and DMER on held-out pieces.

Protocol, on a VGMIDI folder built by `dsaml prepare vgmidi` (pieces split in contiguous ring blocks; a listener
belongs to a partition when both their pieces do, so a test listener's pieces are test pieces, never trained on):

- personalization (`dsaml.evaluation.protocol.evaluate_tasks`, the protocol `dsaml evaluate` runs): every listener of
  `--partition` is scored twice, support = one of their pieces and query = the other, then the reverse; a
  listener's figure is the mean of the two. Methods: the model as is (`before`), personalized with the model
  config's own inner loop (`after`, `inner_loop()`), the shift and shrunk linear recalibrations fitted on the
  support piece, and the `crowd`: the mean curve of the OTHER listeners of the query piece (the listener left
  out; `dsaml.evaluation.references.CrowdReferences`), what a perfect non-personal model could know. RMSE, Pearson r and
  CCC per dimension; mean over listeners with a 95 % bootstrap interval (listeners resampled), overall and by
  musicianship level (1-5, the listener's own answer).
- DMER: the unpersonalized model on the partition's pieces against their crowd average (`dmer` config), beside a
  constant at the training pieces' mean: RMSE (per piece, then mean over pieces), Pearson r over all steps of
  all pieces (pooled: level differences between pieces count) and within pieces (mean of per-piece r), each
  with a 95 % bootstrap interval over pieces.

    python benchmarks/vgmidi.py --model outputs/vgmidi/best --dataset data/vgmidi
    python benchmarks/vgmidi.py --model outputs/vgmidi/best --dataset data/vgmidi --partition validation \\
        --adaptation-steps 10 --output results/vgmidi_validation_10steps.json   # settings: validation listeners only
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import common
import numpy as np
from dmer import DIMENSIONS, RESAMPLES, bootstrap_ci, dmer_figures, format_dmer, interval, pooled_pearson  # noqa: F401  (tests use them here)

SCORES = ("rmse", "pearson", "ccc")
METHODS = ("before", "after", "crowd", "shift", "linear")
WORSE_BY = 0.01  # RMSE: a listener made worse by more than this counts as hurt, as in `dsaml.evaluation.summary.summarize`


def both_ways_tasks(groups: dict[str, list[int]], seed: int) -> list:
    """Per listener, one task per piece as the support, the listener's other piece(s) as the query."""
    import zlib

    from dsaml.data.tasks import Task

    tasks = []
    for name in sorted(groups):
        rows = [int(i) for i in groups[name]]
        for k, support in enumerate(rows):
            task_seed = int(np.random.default_rng([seed, zlib.crc32(name.encode()), k]).integers(0, 2**63 - 1))
            tasks.append(Task(name, (support,), tuple(r for r in rows if r != support), task_seed, len(tasks)))
    return tasks


def listener_records(results) -> dict[str, dict[str, float]]:
    """annotator -> the mean of their tasks' flat scores (every listener weighs the same)."""
    by_annotator: dict[str, list[dict]] = {}
    for result in results:
        by_annotator.setdefault(result.annotator, []).append(result.flat())
    out = {}
    for name, rows in by_annotator.items():
        keys = [k for k, v in rows[0].items() if "/" in k and isinstance(v, (int, float))
                and not k.startswith("support_")]
        out[name] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    return out


def method_table(records: Sequence[dict], resamples: int, seed: int) -> dict:
    """method -> `<dimension>_<score>` -> mean and 95 % interval over listeners."""
    table = {}
    for method in METHODS:
        if f"{method}/rmse" not in records[0]:
            continue
        table[method] = {f"{d}_{s}": bootstrap_ci([r[f"{method}/{d}_{s}"] for r in records], resamples=resamples,
                                                  seed=seed)
                         for d in DIMENSIONS for s in SCORES}
    return table


def personalization_effect(records: Sequence[dict], resamples: int, seed: int) -> dict:
    """Per dimension: the mean RMSE change after - before (and after - crowd) with intervals, and how many
    listeners personalization made better, worse, worse by more than `WORSE_BY`."""
    out = {}
    for d in DIMENSIONS:
        change = [r[f"after/{d}_rmse"] - r[f"before/{d}_rmse"] for r in records]
        out[d] = {"rmse_after_minus_before": bootstrap_ci(change, resamples=resamples, seed=seed),
                  "listeners_better": int(sum(c < 0 for c in change)),
                  "listeners_worse": int(sum(c > 0 for c in change)),
                  f"listeners_worse_by_{WORSE_BY}": int(sum(c > WORSE_BY for c in change))}
        if f"crowd/{d}_rmse" in records[0]:
            out[d]["rmse_after_minus_crowd"] = bootstrap_ci(
                [r[f"after/{d}_rmse"] - r[f"crowd/{d}_rmse"] for r in records], resamples=resamples, seed=seed)
    return out


def personalization_figures(args, model, root) -> dict:
    """Every listener of the partition, both ways, through `dsaml.evaluation`; means, intervals, by level."""
    from dsaml.adaptation.config import personalization_config
    from dsaml.data.datasets import annotator_songs, dataset_metadata, load_pdmer
    from dsaml.data.song_store import SongStore
    from dsaml.evaluation.protocol import evaluate_tasks, inner_loop
    from dsaml.evaluation.references import references_for
    from dsaml.evaluation.summary import summarize

    rows = load_pdmer(root, "pdmer_flat", split=args.partition)
    store = SongStore(rows, root, model.config, dataset_metadata(root).get("value_range", (-1.0, 1.0)))
    groups = annotator_songs(rows)
    if args.max_annotators:
        groups = {a: groups[a] for a in sorted(groups)[: args.max_annotators]}
    tasks = both_ways_tasks(groups, args.seed)
    personalizer = inner_loop(steps=args.adaptation_steps, lr=args.adaptation_lr)
    results = evaluate_tasks(model, store, tasks, personalizer, progress=True, references=references_for(root))
    records = listener_records(results)
    level = {a: json.loads(rows[groups[a][0]]["annotator_info"]).get("musicianship") for a in groups}
    by_level = {}
    for value in sorted({v for v in level.values() if v is not None}):
        chosen = [records[a] for a in records if level[a] == value]
        by_level[str(value)] = {"listeners": len(chosen), "methods": method_table(chosen, args.resamples, args.seed),
                                "effect": personalization_effect(chosen, args.resamples, args.seed)}
    listeners = list(records.values())
    return {
        "listeners": len(records), "tasks": len(results), "pieces": len(set(rows["song_id"])),
        # the recipe the listeners were personalized with (`dsaml.adaptation.config.PersonalizationConfig`)
        "personalization": personalization_config(model).for_inner_loop(args.adaptation_steps,
                                                                         args.adaptation_lr).to_dict(),
        **learned_ridge(model),
        "summary": summarize(results),
        "methods": method_table(listeners, args.resamples, args.seed),
        "effect": personalization_effect(listeners, args.resamples, args.seed),
        "by_musicianship": by_level,
        "per_listener": per_listener_table(records, level),
    }


def learned_ridge(model) -> dict:
    """The meta-learned ridge settings per dimension (`learn_adaptation_ridge`), or nothing."""
    import torch

    from dsaml.adaptation.config import personalization_config
    from dsaml.adaptation.ridge import ridge_settings

    if getattr(model.predictor, "ridge", None) is None:
        return {}
    with torch.no_grad():
        strength, share = (v.tolist() for v in ridge_settings(model, personalization_config(model)))
    return {"learned_ridge": {"strength": dict(zip(DIMENSIONS, strength)), "level_share": dict(zip(DIMENSIONS, share))}}


def per_listener_table(records: dict[str, dict], level: dict) -> dict:
    """Each listener's RMSE per method and dimension, as compact rows (the JSON stays small)."""
    columns = [f"{m}/{d}_rmse" for m in METHODS for d in DIMENSIONS if f"{m}/rmse" in next(iter(records.values()))]
    return {"columns": ["annotator", "musicianship", *columns],
            "rows": [[a, level[a], *(round(r[c], 4) for c in columns)] for a, r in sorted(records.items())]}


def report(figures: dict) -> str:
    """The console tables."""
    from make_table import vgmidi_inner_loop

    from dsaml.evaluation.summary import format_summary

    pdmer = figures["personalization"]
    lines = [format_dmer(figures["dmer"], figures["partition"])]
    lines.append(f"personalization, {pdmer['listeners']} {figures['partition']} listeners x 2 directions "
                 f"({vgmidi_inner_loop(pdmer)}):")
    for method, scores in pdmer["methods"].items():
        lines.append(f"  {method:<7}" + "  ".join(f"{d[0].upper()} {s} {interval(scores[f'{d}_{s}'])}"
                                                  for d in DIMENSIONS for s in ("rmse", "pearson")))
    lines.append(format_summary(pdmer["summary"], title=f"{figures['partition']} listeners (dsaml.evaluation)"))
    for d, e in pdmer["effect"].items():
        lines.append(f"  {d}: after - before RMSE {interval(e['rmse_after_minus_before'], 4)}; better for "
                     f"{e['listeners_better']}, worse for {e['listeners_worse']} "
                     f"(by > {WORSE_BY}: {e[f'listeners_worse_by_{WORSE_BY}']})")
    return "\n".join(lines)


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a trained model folder, e.g. outputs/vgmidi/best")
    p.add_argument("--dataset", required=True, help="a VGMIDI folder built by `dsaml prepare vgmidi`")
    p.add_argument("--partition", default="test", choices=("test", "validation"))
    p.add_argument("--max-annotators", type=int, default=None)
    p.add_argument("--adaptation-steps", type=int, default=None,
                   help="inner steps (default: the model config's); compare settings on --partition validation")
    p.add_argument("--adaptation-lr", type=float, default=None, help="inner learning rate (default: the config's)")
    p.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    common.setup(args.threads)
    if args.quick:
        args.max_annotators = args.max_annotators or 8
        args.resamples = min(args.resamples, 200)
    import datasets

    from dsaml.data.datasets import dataset_root
    from dsaml.inference.loading import load_model

    datasets.disable_progress_bars()
    model = load_model(args.model)
    root = dataset_root(args.dataset)
    figures = {"model": args.model, "dataset": args.dataset, "partition": args.partition,
               "dmer": dmer_figures(args, model, root), "personalization": personalization_figures(args, model, root)}
    print(report(figures))
    name = "vgmidi" if args.partition == "test" else f"vgmidi_{args.partition}"
    common.write_result(name, figures, args=args, path=args.output)


if __name__ == "__main__":
    main()
