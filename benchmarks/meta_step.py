"""Meta-training throughput and peak memory on CPU: FOMAML, second-order MAML and Reptile (`dsaml.training.meta`), for
the small and the default model, and the official-style meta-step (`reference_meta_step.py`: per-task deep
copy, step-by-step SGD) on the same tasks in the same process, with the max difference of the two
meta-gradients.

One outer step = `meta_gradient` over T tasks + `apply_meta_gradient` + one Adam step. A task = 1 support
window and Q query windows of W steps (random log-mel patches and labels: speed does not depend on the
values), S inner SGD steps, training mode (dropout on, masks seeded per task). Ours and the reference are
timed in alternation (A, B, A, B, ...) so background load on a shared machine hits both alike.

    python benchmarks/meta_step.py            # defaults below, a few minutes on 2 cores
    python benchmarks/meta_step.py --quick    # small model only, tiny tasks, < 1 min
    python benchmarks/meta_step.py --adapted predictor --algorithms fomaml   # -> results/meta_step_predictor.json
    python benchmarks/meta_step.py --adapted predictor --algorithms fomaml --inner-steps 16   # official inner loop

With `--adapted predictor` (a model meta-trained with `adapted_parameters: [predictor]`) ours runs the encoder
once per task and the inner steps on the predictor alone (`dsaml.adaptation`), while the reference still runs
the whole copy at every inner step; their meta-gradients are compared with dropout off (`model.eval()`), since
ours draws the encoder's dropout masks once per task rather than once per inner step.
"""

from __future__ import annotations

import time

import common

from dsaml.adaptation.config import PersonalizationConfig


def make_tasks(config, *, tasks: int, query: int, window: int, seed: int = 0):
    from dsaml.data.batches import TaskBatch

    return [
        TaskBatch(common.random_batch(1, window, config, seed=seed + 2 * i),
                  common.random_batch(query, window, config, seed=seed + 2 * i + 1), seed=seed + i)
        for i in range(tasks)
    ]


def _recipe(steps: int, lr: float, adapted) -> PersonalizationConfig:
    return PersonalizationConfig(steps=steps, learning_rate=lr, adapted_parameters=list(adapted or []))


def outer_step_fn(model, tasks, algorithm, steps, lr, optimizer, reference=False, adapted=None):
    from reference_meta_step import reference_meta_gradient

    from dsaml.training.meta import apply_meta_gradient, meta_gradient

    def run():
        if reference:
            grads, _ = reference_meta_gradient(model, tasks, steps=steps, lr=lr, adapted=adapted)
        else:
            grads, _ = meta_gradient(model, tasks, algorithm=algorithm, recipe=_recipe(steps, lr, adapted))
        apply_meta_gradient(model, grads)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run


def max_grad_diff(model, tasks, steps, lr, adapted=None) -> dict:
    """Ours (fomaml) vs the reference on the same tasks and weights: max |diff| and max |grad|."""
    from reference_meta_step import reference_meta_gradient

    from dsaml.training.meta import meta_gradient

    was_training = model.training
    model.train(not adapted)  # predictor-only: compare without dropout (see the module docstring)
    ours, ours_stats = meta_gradient(model, tasks, algorithm="fomaml", recipe=_recipe(steps, lr, adapted))
    ref, ref_stats = reference_meta_gradient(model, tasks, steps=steps, lr=lr, adapted=adapted)
    model.train(was_training)
    assert set(ours) == set(ref)
    diff = max(float((ours[k] - ref[k]).abs().max()) for k in ours)
    scale = max(float(ref[k].abs().max()) for k in ref)
    return {"max_abs_grad_diff": diff, "max_abs_grad": scale, "relative": diff / scale if scale else 0.0,
            "query_loss_ours": ours_stats["query_loss"], "query_loss_reference": ref_stats["query_loss"]}


def bench_size(size: str, *, tasks: int, query: int, window: int, steps: int, algorithms, repeats: int,
               warmup: int, lr: float = 5e-3, adapted=None) -> dict:
    import torch

    model = common.build_model(size)
    model.train()
    batch = make_tasks(model.config, tasks=tasks, query=query, window=window)
    # Adam on a throwaway copy of the state so every configuration starts from the same weights
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    out = {"model": size, "parameters": common.num_parameters(model), "tasks_per_step": tasks,
           "support_windows": 1, "query_windows": query, "window_steps": window, "inner_steps": steps,
           "inner_lr": lr, "adapted": list(adapted or []), "algorithms": {}}
    # equal results first (fresh weights), then timings
    out["reference_check"] = max_grad_diff(model, batch, steps, lr, adapted)
    for algorithm in algorithms:
        model.load_state_dict(initial)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
        runs = {"ours": outer_step_fn(model, batch, algorithm, steps, lr, optimizer, adapted=adapted)}
        if algorithm == "fomaml":
            runs["reference"] = outer_step_fn(model, batch, algorithm, steps, lr, optimizer, reference=True,
                                              adapted=adapted)
        for run in runs.values():
            for _ in range(warmup):
                run()
        times = {name: [] for name in runs}
        peaks = {name: 0.0 for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():  # alternate ours / reference
                with common.PeakRSS() as mem:
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
                peaks[name] = max(peaks[name], mem.peak_mib)
        for name in runs:
            ts = sorted(times[name])
            median = ts[len(ts) // 2] if len(ts) % 2 else 0.5 * (ts[len(ts) // 2 - 1] + ts[len(ts) // 2])
            key = algorithm if name == "ours" else "fomaml_reference"
            out["algorithms"][key] = {
                "seconds_per_outer_step": median, "min_seconds_per_outer_step": ts[0], "all_s": times[name],
                "outer_steps_per_s": 1.0 / median, "tasks_per_s": tasks / median,
                "peak_rss_mib": peaks[name], "memory_method": mem.method,
            }
        print(f"  {size:7s} {algorithm:7s} " + "  ".join(
            f"{n}: {out['algorithms'][algorithm if n == 'ours' else 'fomaml_reference']['tasks_per_s']:.3f} tasks/s"
            for n in runs), flush=True)
    if "fomaml" in out["algorithms"] and "fomaml_reference" in out["algorithms"]:
        ours, ref = out["algorithms"]["fomaml"], out["algorithms"]["fomaml_reference"]
        out["speedup_vs_reference"] = ref["seconds_per_outer_step"] / ours["seconds_per_outer_step"]  # medians
        out["speedup_vs_reference_min"] = ref["min_seconds_per_outer_step"] / ours["min_seconds_per_outer_step"]
        # per alternation pair (ours and the reference measured back to back, under about the same load)
        pairs = sorted(r / o for o, r in zip(ours["all_s"], ref["all_s"]))
        out["speedup_vs_reference_pairs"] = pairs
    return out


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=None, choices=("small", "default"))
    p.add_argument("--algorithms", nargs="+", default=["fomaml", "maml", "reptile"])
    p.add_argument("--adapted", nargs="+", default=None, metavar="PREFIX",
                   help="adapt only these parameters in the inner loop (e.g. predictor); default: all")
    p.add_argument("--inner-steps", type=int, default=None, help="inner SGD steps (default 4; official: 16)")
    args = p.parse_args()
    name = "meta_step" + ("_" + "_".join(a.replace(".", "-") for a in args.adapted) if args.adapted else "")
    name += f"_{args.inner_steps}steps" if args.inner_steps is not None else ""
    common.setup(args.threads)
    if args.quick:
        plans = {"small": dict(tasks=2, query=2, window=20, steps=2, repeats=1, warmup=1)}
    else:
        plans = {
            "small": dict(tasks=4, query=4, window=60, steps=4, repeats=3, warmup=1),
            "default": dict(tasks=2, query=2, window=60, steps=4, repeats=2, warmup=1),
        }
    sizes = args.sizes or list(plans)
    figures = {}
    for size in sizes:
        plan = dict(plans.get(size, plans.get("small")))
        if args.inner_steps is not None:
            plan["steps"] = args.inner_steps
        print(f"{size}: {plan}", flush=True)
        figures[size] = bench_size(size, algorithms=args.algorithms, adapted=args.adapted, **plan)
        check = figures[size]["reference_check"]
        print(f"  {size}: ours vs reference max |grad diff| {check['max_abs_grad_diff']:.2e} "
              f"(max |grad| {check['max_abs_grad']:.2e}); speed-up {figures[size].get('speedup_vs_reference', 0):.2f}x (median), "
              f"{figures[size].get('speedup_vs_reference_min', 0):.2f}x (best times)",
              flush=True)
        common.write_result(name, figures, args=args, path=args.output)  # after each size: partial results survive


if __name__ == "__main__":
    main()
