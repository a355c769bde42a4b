"""The speed and memory tables: meta-training steps, inference, the sliding-window hop, personalization latency,
dataset loading."""

from __future__ import annotations

import json

from table_format import RESULTS, fmt, load, source, table


def meta_section(doc: dict) -> list[str]:
    out = ["## Meta-training step (`meta_step.py`)", ""]
    rows, ref_rows = [], []
    for size, fig in doc["figures"].items():
        shape = (f"{fig['tasks_per_step']} tasks x (1 support + {fig['query_windows']} query windows of "
                 f"{fig['window_steps']} steps), {fig['inner_steps']} inner steps")
        for algo, a in fig["algorithms"].items():
            rows.append([size, algo.replace("fomaml_reference", "FOMAML, official-style reference"),
                         a["tasks_per_s"], a["outer_steps_per_s"], a["seconds_per_outer_step"], a["peak_rss_mib"], shape])
        if "fomaml_reference" in fig["algorithms"]:
            check = fig["reference_check"]
            best = fig.get("speedup_vs_reference_min")
            pairs = fig.get("speedup_vs_reference_pairs")
            ref_rows.append([size, fig["algorithms"]["fomaml"]["seconds_per_outer_step"],
                             fig["algorithms"]["fomaml_reference"]["seconds_per_outer_step"],
                             f"{fig['speedup_vs_reference']:.2f}x",
                             f"{best:.2f}x" if best else "n/a",
                             ", ".join(f"{x:.2f}" for x in pairs) if pairs else "n/a",
                             f"{check['max_abs_grad_diff']:.1e}", f"{check['max_abs_grad']:.2f}"])
    out += table(["model", "algorithm", "tasks/s", "outer steps/s", "s / outer step", "peak RSS MiB", "task shape"], rows)
    out += ["", "Ours (`dsaml.training.meta`, functional fast weights) vs the official-style meta-step (per-task deep copy, "
            "step-by-step SGD; `reference_meta_step.py`), same tasks, same process, timed in alternation:", ""]
    out += table(["model", "ours s/step (median)", "reference s/step (median)", "speed-up (medians)",
                  "speed-up (best times)", "speed-up per back-to-back pair", "max abs meta-grad diff",
                  "max abs meta-grad"], ref_rows)
    pairs = load(RESULTS, "meta_step_pairs")
    if pairs is not None:
        f = pairs["figures"]
        out += ["", f"Back-to-back pairs (`meta_step_pairs.py`, {f['model']} model, {f['task']}): ours is "
                    f"**{f['median_ratio']:.2f}x** the reference's speed (median of {len(f['pairs'])} per-pair ratios, "
                    f"quartiles {f['quartiles'][0]:.2f}-{f['quartiles'][1]:.2f}; median times {f['median_ours_s']:.2f} s "
                    f"vs {f['median_reference_s']:.2f} s). {source(pairs)}"]
    out += ["", source(doc), ""]
    return out + predictor_only_rows()


def predictor_only_rows() -> list[str]:
    """`meta_step.py --adapted predictor [--inner-steps N]`: the inner loop adapts the predictor only."""
    docs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("meta_step_predictor*.json"))
            if not p.stem.endswith("_quick")]
    if not docs:
        return []
    rows = []
    for doc in docs:
        for size, fig in doc["figures"].items():
            ours, ref = fig["algorithms"]["fomaml"], fig["algorithms"]["fomaml_reference"]
            rows.append([size, fig["inner_steps"], ours["seconds_per_outer_step"], ref["seconds_per_outer_step"],
                         f"{fig['speedup_vs_reference']:.2f}x", f"{fig['reference_check']['max_abs_grad_diff']:.1e}",
                         f"{fig['reference_check']['max_abs_grad']:.2f}"])
    out = ["### Adapting the predictor only (`meta_step.py --adapted predictor`)", "",
           "With `adapted_parameters: [predictor]` (or its dense layers, as `synthetic_small.yaml`) our inner loop "
           "runs the encoder once per task and steps the predictor on its output; the reference still runs the "
           "whole forward pass at every inner step (with the encoder frozen, so no encoder backward). Same task "
           "shapes as above; meta-gradients compared with dropout off.", ""]
    out += table(["model", "inner steps", "ours s/step (median)", "reference s/step (median)", "speed-up",
                  "max abs meta-grad diff", "max abs meta-grad"], rows)
    return out + ["", *(source(d) for d in docs), ""]


def inference_section(doc: dict) -> list[str]:
    figures = doc["figures"]
    out = ["## Inference: streaming speed, cost against the floor, folders, memory, cold start (`inference.py`)", "",
           "Seconds of audio per second of compute through `dsaml.inference.files.predict_file` (FLAC decoded block by "
           "block in a background thread, streamed features, sliding windows with the local CNN once per step), "
           "batch 1. `network`: the network alone on precomputed features; `x floor` is its time over the time "
           "at hop = window (every step through the network once).", ""]
    rows, folders = [], []
    for size, fig in figures.items():
        if not isinstance(fig, dict) or "cases" not in fig:
            continue
        for case, c in fig["cases"].items():
            if case == "folder":
                folders.append([size, f"{c['files']} x {c['audio_seconds'] / c['files']:.0f} s", c["one_at_a_time_rtf"],
                                c["batched_rtf"], c["batched_over_one_at_a_time"],
                                ", ".join(str(x) for x in c["measured_batch_sizes"])])
            elif case.startswith("network/"):
                rows.append([size, f"network, {c['audio_seconds'] / 60:.0f} min", c["hop_steps"], "",
                             c["seconds"], f"x{c['cost_ratio']:.2f}", ""])
            else:
                rows.append([size, case.split("/")[0], c["hop_steps"], c["real_time_factor"], c["seconds"], "",
                             c["peak_rss_mib"]])
    out += table(["model", "audio", "hop", "real-time factor", "seconds", "x floor", "peak RSS MiB"], rows)
    out += ["", "Folders: one file at a time (batch 1, nothing overlapped) against `predict_files` (decoding ahead, "
            "windows of all files batched, batch size measured on the first windows).", ""]
    out += table(["model", "files", "one at a time RTF", "batched RTF", "batched / one-at-a-time time",
                  "measured batch size"], folders)
    cli = figures.get("cli")
    if cli:
        out += ["", f"`dsaml predict` of one file in a fresh interpreter, {cli['model']} architecture (wall time "
                "includes imports, model load, prediction and the CSV / JSON / PNG):", ""]
        out += table(["file", "wall s", "peak RSS MiB"],
                     [[k, v["wall_s"], v["peak_rss_mib"]] for k, v in cli.items() if isinstance(v, dict)])
        out += ["", f"Peak RSS of the long file over the 45 s clip: {cli['long_over_short_peak_rss']:.3f}."]
    return out + ["", source(doc), ""]


def window_hop_section(doc: dict) -> list[str]:
    f = doc["figures"]
    out = ["## Sliding-window hop: accuracy against cost (`window_hop.py`)", "",
           f"`{f['model']}` (window {f['window_steps']} steps), unpersonalized, `{f['dataset']}` {f['partition']} "
           f"listeners ({f['listeners']}), scores per song averaged per listener then over listeners. Reference: hop "
           f"{f['reference_hop_steps']} (window / 6); chosen: hop {f['chosen_hop_steps']} (every score within "
           f"{f['keep']} of the reference's).", ""]
    test = load(RESULTS, "window_hop_test")
    rows = [[c["hop_steps"], *(fmt(c[k], 4) for k in ("rmse", "arousal_rmse", "valence_rmse", "pearson", "ccc")),
             fmt(c["windows_per_step"], 3), f"x{c['cost_ratio_windows']:.2f}",
             fmt(c["model_seconds_per_audio_second"] * 1e3, 2)] for c in f["curve"]]
    out += table(["hop", "RMSE", "A RMSE", "V RMSE", "r", "CCC", "windows / step", "x floor (windows)",
                  "network ms / audio s (under the run's load)"], rows)
    if test and test["figures"]["model"] == f["model"]:
        t = test["figures"]
        out += ["", f"Test listeners ({t['listeners']}), reported once after the choice:", ""]
        out += table(["hop", "RMSE", "A RMSE", "V RMSE", "r", "CCC"],
                     [[c["hop_steps"], *(fmt(c[k], 4) for k in ("rmse", "arousal_rmse", "valence_rmse", "pearson",
                                                                "ccc"))] for c in t["curve"]])
        out += ["", source(test)]
    return out + ["", source(doc), ""]


def personalization_section(doc: dict) -> list[str]:
    out = ["## Personalization latency (`personalization.py`)", "",
           "One listener from one 30 s annotated song, default settings of the model config.", ""]
    rows = [[size, f["adaptation_steps"], f["support_windows"], f["adapt_s"], f["end_to_end_s"],
             f["per_inner_step_s"], f["peak_rss_mib"], "yes" if f["under_1s"] else "no",
             f.get("predictor_only_adapt_s")]
            for size, f in doc["figures"].items()]
    out += table(["model", "inner steps", "support windows", "adapt s", "end to end s", "s per inner step",
                  "peak RSS MiB", "end to end < 1 s", "adapt s, predictor only"], rows)
    out += ["", "Last column: the same model configured with `adapted_parameters: [predictor]` (the inner loop "
                "runs the encoder once and steps the predictor on its output)."]
    return out + ["", source(doc), ""]


def loading_section(doc: dict) -> list[str]:
    f = doc["figures"]
    out = ["## Dataset loading (`dataset_loading.py`)", "",
           f"`{f['dataset']}`: {f['annotator_splits']} annotator splits, {fmt(f['folder_mib'], 0)} MiB. "
           "Cold = empty `datasets` cache.", ""]
    rows = [["one annotator split (`pdmer`, split=...)", f["one_split"]["cold_s"], f["one_split"]["warm_s"]],
            ["`pdmer_flat` train split", f["flat_train_split"]["cold_s"], None],
            ["filter one annotator from `pdmer_flat` train", f["flat_train_split"]["filter_one_annotator_s"], None]]
    if "all_splits" in f:
        rows.append([f"all {f['all_splits']['splits']} annotator splits", f["all_splits"]["cold_s"], None])
    out += table(["what", "cold s", "warm s"], rows)
    return out + ["", source(doc), ""]
