"""Ours vs the official-style meta-step as many short back-to-back pairs: the robust speed ratio on a shared,
noisy machine (each pair runs both under about the same background load; the median of the per-pair ratios
is reported, with its spread).

One pair = `dsaml.training.meta.meta_gradient(algorithm="fomaml")` and `reference_meta_step.reference_meta_gradient`
on the same single task (1 support + Q query windows), order alternating between pairs.

    python benchmarks/meta_step_pairs.py            # small model, 12 pairs
    python benchmarks/meta_step_pairs.py --quick    # 4 pairs, short windows
"""

from __future__ import annotations

import statistics
import time

import common
from meta_step import make_tasks


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--size", default="small", choices=("small", "default"))
    p.add_argument("--pairs", type=int, default=None)
    args = p.parse_args()
    common.setup(args.threads)
    from reference_meta_step import reference_meta_gradient

    from dsaml.training.meta import meta_gradient

    pairs = args.pairs or (4 if args.quick else 12)
    window, query, steps = (20, 1, 2) if args.quick else (60, 2, 4)
    model = common.build_model(args.size)
    model.train()
    tasks = make_tasks(model.config, tasks=1, query=query, window=window)
    ours = lambda: meta_gradient(model, tasks, algorithm="fomaml", steps=steps, lr=5e-3)  # noqa: E731
    ref = lambda: reference_meta_gradient(model, tasks, steps=steps, lr=5e-3)  # noqa: E731
    ours(), ref()  # warm-up
    rows = []
    for i in range(pairs):
        order = (("ours", ours), ("reference", ref)) if i % 2 == 0 else (("reference", ref), ("ours", ours))
        t = {}
        for name, fn in order:
            start = time.perf_counter()
            fn()
            t[name] = time.perf_counter() - start
        rows.append(t)
        print(f"  pair {i}: ours {t['ours']:.2f} s, reference {t['reference']:.2f} s, ratio {t['reference'] / t['ours']:.2f}",
              flush=True)
    ratios = sorted(r["reference"] / r["ours"] for r in rows)
    figures = {
        "model": args.size, "task": f"1 task: 1 support + {query} query windows of {window} steps, {steps} inner steps",
        "pairs": rows, "median_ratio": statistics.median(ratios),
        "quartiles": [ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]],
        "median_ours_s": statistics.median(r["ours"] for r in rows),
        "median_reference_s": statistics.median(r["reference"] for r in rows),
    }
    print(f"speed-up of ours over the reference: median {figures['median_ratio']:.2f}x "
          f"(quartiles {figures['quartiles'][0]:.2f}-{figures['quartiles'][1]:.2f}) over {pairs} pairs")
    common.write_result("meta_step_pairs", figures, args=args, path=args.output)


if __name__ == "__main__":
    main()
