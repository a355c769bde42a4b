"""Write benchmarks/RESULTS.md (markdown tables) from benchmarks/results/*.json, and the summary table between
the `<!-- benchmarks:start -->` / `<!-- benchmarks:end -->` markers of the top-level README.md (and the VGMIDI
tables between its `<!-- vgmidi:start -->` / `<!-- vgmidi:end -->` markers, and every config's personalization
tables between `<!-- accuracy:start -->` / `<!-- accuracy:end -->`).

For each benchmark the full run's JSON is used, or the `--quick` one (marked "quick") when only that exists.

    python benchmarks/make_table.py [--results benchmarks/results] [--output benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
_RESULTS: list[Path] = []  # the results folder of this run (set in main)


def load(results: Path, name: str) -> dict | None:
    for candidate in (results / f"{name}.json", results / f"{name}_quick.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def fmt(x, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if abs(x) >= 100:
            return f"{x:.0f}"
        if x != 0 and abs(x) < 0.01:
            return f"{x:.1e}"
        return f"{x:.{digits}f}"
    return str(x)


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return lines


def source(doc: dict) -> str:
    m = doc["machine"]
    quick = " (--quick)" if doc.get("quick") else ""
    return (f"_`{doc['command']}`{quick}, {doc['date_utc']}, {m.get('cpu_model', m.get('processor'))}, "
            f"torch {m['torch']} with {m['torch_threads']} threads, 1-min load average at the end "
            f"{fmt(m.get('load_average_1m_at_end'), 1)}._")


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
    out += ["", "Ours (`dsaml.meta`, functional fast weights) vs the official-style meta-step (per-task deep copy, "
            "step-by-step SGD; `reference_meta_step.py`), same tasks, same process, timed in alternation:", ""]
    out += table(["model", "ours s/step (median)", "reference s/step (median)", "speed-up (medians)",
                  "speed-up (best times)", "speed-up per back-to-back pair", "max abs meta-grad diff",
                  "max abs meta-grad"], ref_rows)
    pairs = load(Path(_RESULTS[0]), "meta_step_pairs") if _RESULTS else None
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
    docs = [json.loads(p.read_text()) for p in sorted(Path(_RESULTS[0]).glob("meta_step_predictor*.json"))
            if not p.stem.endswith("_quick")] if _RESULTS else []
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
           "Seconds of audio per second of compute through `dsaml.predict.predict_file` (FLAC decoded block by "
           "block in a background thread, streamed features, sliding windows with the local CNN once per step), "
           "batch 1. `network`: the network alone on precomputed features; `x floor` is its time over the time "
           "at hop = window (every step through the network once). 1-min load average at the start: "
           f"{figures.get('load_average_1m_at_start', float('nan')):.2f}, at the end: "
           f"{figures.get('load_average_1m_at_end', float('nan')):.2f}.", ""]
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
    test = load(Path(_RESULTS[0]), "window_hop_test") if _RESULTS else None
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


PARTITION_ORDER = ("test", "test_unseen", "validation")


def accuracy_docs(results: Path) -> list[dict]:
    """Every full `accuracy.py` run: the main job's first, then each `--label`; test, unseen songs, validation."""
    docs = [json.loads(f.read_text()) for f in sorted(results.glob("accuracy*.json"))
            if not f.stem.endswith(("_quick", "_smoke"))]
    def key(doc):
        f = doc["figures"]
        part = f["partition"]
        return (f.get("label") or "", PARTITION_ORDER.index(part) if part in PARTITION_ORDER else 9)
    return sorted(docs, key=key)


def accuracy_table(f: dict) -> list[str]:
    """Before / after / reference rows with the gap closed, and how many listeners got worse."""
    summary = f["summary"]
    rows = []
    for method in ("before", "after", "shift", "linear", "population", "oracle"):
        if f"{method}/rmse" not in summary:
            continue
        gap = " / ".join(f"{summary[f'gap_closed/{method}/{d}']:+.0%}" for d in ("arousal", "valence", "overall")
                         if f"gap_closed/{method}/{d}" in summary)
        rows.append([method] + [f"{summary[f'{method}/{k}']:.3f}" for k in
                                ("rmse", "arousal_rmse", "valence_rmse", "pearson", "ccc")] + [gap or "-"])
    out = table(["method", "RMSE", "arousal RMSE", "valence RMSE", "PCC", "CCC", "gap closed A / V / all"], rows)
    return out + ["", f"Listeners improved by personalization: CCC {f['annotators_ccc_improved']}/{f['annotators']}, "
                      f"RMSE {f['annotators_rmse_improved']}/{f['annotators']}; RMSE worse by more than 0.01: "
                      f"{summary['annotators_rmse_worse']}/{f['annotators']}."]


def accuracy_protocol(f: dict) -> str:
    query = f"up to {f['max_query_songs']}" if f["max_query_songs"] else "every other"
    return (f"`{f['dataset']}` {f['partition']} partition (held-out listeners): {f['annotators']} listeners x "
            f"{f['support_repeats']} support songs ({f['tasks']} tasks), {query} song of the listener as query; "
            "a listener's score is the mean over their support songs, the table the mean over listeners."
            + share_sentence(f.get("adaptation_share", [1.0, 1.0]), "song", f.get("adaptation_max_delay", 0)))


def share_sentence(share: list[float], piece: str, max_delay: int = 0) -> str:
    """How much of the inner loop's step personalization keeps (the recipe's `share`), when not all of it, and the
    longest reaction lag it fits (`max_delay`), when any."""
    lag = (f" The refit also fits the listener's reaction lag, up to {max_delay} steps (the personalization "
           "config's `max_delay`)." if max_delay else "")
    if share == [1.0, 1.0]:
        return lag
    return (f" Personalization keeps {share[0]:.2f} / {share[1]:.2f} (arousal / valence) of the inner loop's step on "
            f"the support {piece}: the personalization config's `share`, which the shipped configs choose on "
            "the validation listeners (`calibrate_adaptation`)." + lag)


def accuracy_title(f: dict) -> str:
    return f"{f.get('label') or 'main job'} model, {f['partition']} listeners"


def accuracy_section(doc: dict) -> list[str]:
    f = doc["figures"]
    out = [f"## Accuracy on synthetic PDMER (`accuracy.py`): {accuracy_title(f)}", "",
           f"Model `{f['model']}`; {accuracy_protocol(f)} The share of the gap to the listener oracle each method "
           "closes is per dimension.", ""]
    return out + accuracy_table(f) + ["", source(doc), ""]


def dmer_lines(doc: dict | None) -> list[str]:
    if doc is None:
        return []
    f, d = doc["figures"], doc["figures"]["dmer"]
    dims = ("arousal", "valence")
    return [f"DMER, the unpersonalized model on the {d['pieces']} {f['partition']} songs of `dmer` (their averaged "
            "labels): " + "; ".join(f"{dim} pooled r {ci(d[dim]['pooled_pearson'])}, RMSE {ci(d[dim]['model_rmse'])} "
                                     f"(constant {d[dim]['constant_rmse']['mean']:.3f})" for dim in dims)
            + f" [95 % bootstrap interval over songs; `dmer.py`]."]


def accuracy_readme(results: Path) -> list[str]:
    """The README's personalization tables: every config's model on every partition, with the DMER line."""
    out = []
    for doc in accuracy_docs(results):
        f = doc["figures"]
        out += [f"**{accuracy_title(f)}** (`{f['model']}`). {accuracy_protocol(f)}", ""]
        out += accuracy_table(f) + [""]
        if f["partition"] == "test":
            dmer = dmer_lines(load(results, "_".join(x for x in ("dmer", f.get("label")) if x)))
            out += dmer + [""] * bool(dmer)
        out += [source(doc), ""]
    return out


VGMIDI_METHODS = {"before": "unpersonalized", "after": "1-shot personalized (inner loop)",
                  "crowd": "crowd of the other listeners", "shift": "shift (support piece)",
                  "linear": "shrunk linear (support piece)"}


def ci(c: dict, digits: int = 3) -> str:
    return f"{c['mean']:.{digits}f} [{c['low']:.{digits}f}, {c['high']:.{digits}f}]"


def recipe_of(p: dict) -> dict:
    """The personalization recipe a result records: its `personalization` mapping, or (results written before the
    recipe left the architecture config) its `adaptation_*` keys under the recipe's names."""
    from dsaml.adaptation.config import LEGACY_FIELDS, PersonalizationConfig

    if "personalization" in p:
        return dict(p["personalization"])
    legacy = {LEGACY_FIELDS[k]: v for k, v in p.items() if k in LEGACY_FIELDS}
    return {**PersonalizationConfig().to_dict(), **legacy, "holdout": p.get("adaptation_holdout", 0.0)}


def vgmidi_inner_loop(p: dict) -> str:
    """The personalization a VGMIDI result used, in words (results before the ridge method: SGD)."""
    r = recipe_of(p)
    where = ", ".join(r["adapted_parameters"]) or "all parameters"
    learned = p.get("learned_ridge")
    if learned:
        s, a = learned["strength"], learned["level_share"]
        text = (f"{where} refitted by the meta-learned ridge (strength {s['arousal']:.3g} / {s['valence']:.3g}, "
                f"level share {a['arousal']:.2f} / {a['valence']:.2f}, arousal / valence)")
    elif r["method"] == "ridge":
        text = f"{where} refitted by ridge (strength {r['ridge_strength']})"
    else:
        text = f"{r['steps']} inner steps at lr {r['learning_rate']} on {where}"
    if r.get("holdout"):
        text += f", do-no-harm rule on the last {r['holdout']:.0%} of the support piece"
    if r["share"] != [1.0, 1.0]:
        text += f", step kept {r['share'][0]:.2f} / {r['share'][1]:.2f} (`share`)"
    if r["max_delay"]:
        text += f", reaction lag fitted up to {r['max_delay']} steps (`max_delay`)"
    return text


def vgmidi_tables(doc: dict) -> list[str]:
    """VGMIDI (`vgmidi.py`): personalization of real listeners, by musicianship, and DMER on held-out pieces;
    the README's VGMIDI section and RESULTS.md show the same tables."""
    f = doc["figures"]
    p, d = f["personalization"], f["dmer"]
    dims = ("arousal", "valence")
    out = [f"Model `{f['model']}`; {p['listeners']} {f['partition']} listeners (both pieces {f['partition']} pieces, "
           f"{p['pieces']} pieces), each scored twice (support one piece, query the other, and the reverse; "
           f"{p['tasks']} tasks), {vgmidi_inner_loop(p)}, as the model's config sets them. Mean over listeners "
           "[95 % bootstrap interval, listeners resampled].", ""]
    rows = [[label] + [ci(p["methods"][m][f"{dim}_{s}"]) for s in ("rmse", "pearson", "ccc") for dim in dims]
            for m, label in VGMIDI_METHODS.items() if m in p["methods"]]
    out += table(["method", "RMSE A", "RMSE V", "r A", "r V", "CCC A", "CCC V"], rows)
    out.append("")
    for dim in dims:
        e = p["effect"][dim]
        crowd = (f"; after - crowd {ci(e['rmse_after_minus_crowd'], 4)}" if "rmse_after_minus_crowd" in e else "")
        out.append(f"- {dim}: RMSE after - before {ci(e['rmse_after_minus_before'], 4)}{crowd}; personalization "
                   f"better for {e['listeners_better']}, worse for {e['listeners_worse']} of {p['listeners']} "
                   f"listeners (worse by > 0.01: {e['listeners_worse_by_0.01']})")
    out += ["", "By musicianship (the listener's own answer, 1-5): RMSE arousal / valence.", ""]
    rows = []
    for level, g in p["by_musicianship"].items():
        m = g["methods"]
        pair = [f"{m[k]['arousal_rmse']['mean']:.3f} / {m[k]['valence_rmse']['mean']:.3f}"
                for k in ("before", "after", "crowd") if k in m]
        change = " / ".join(f"{g['effect'][dim]['rmse_after_minus_before']['mean']:+.4f}" for dim in dims)
        rows.append([level, g["listeners"], *pair, change])
    out += table(["musicianship", "listeners", "unpersonalized", "personalized", "crowd of others",
                  "after - before"], rows)
    out += ["", f"DMER, the unpersonalized model on the {d['pieces']} {f['partition']} pieces ({d['steps']} steps) "
                "against their crowd average, beside a constant at the training pieces' mean "
                f"(arousal {d['constant']['arousal']:.3f}, valence {d['constant']['valence']:.3f}); RMSE per piece "
                "then averaged, Pearson r over all steps (pooled) and within pieces; [95 % bootstrap interval, "
                "pieces resampled].", ""]
    rows = [[dim, ci(d[dim]["model_rmse"]), ci(d[dim]["constant_rmse"]), ci(d[dim]["rmse_model_minus_constant"]),
             ci(d[dim]["pooled_pearson"]), ci(d[dim]["within_piece_pearson"])] for dim in dims]
    out += table(["dimension", "RMSE model", "RMSE constant", "model - constant", "r pooled", "r within pieces"],
                 rows)
    return out + ["", source(doc)]


def vgmidi_section(doc: dict) -> list[str]:
    return ["## Real listeners: VGMIDI (`vgmidi.py`)", "", *vgmidi_tables(doc), ""]


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


def readme_summary(results: Path) -> list[str]:
    """The README's headline figures: one row per benchmark, from the same JSON files."""
    rows = []
    for name in ("meta_step", "meta_step_predictor_16steps"):
        doc = load(results, name)
        for size, fig in (doc["figures"].items() if doc else ()):
            if "speedup_vs_reference" not in fig:
                continue
            adapted = ", ".join(fig.get("adapted") or []) or "all parameters"
            verdict = "" if fig["speedup_vs_reference"] >= 2 else " (target 2x: not met)"
            rows.append([f"FOMAML meta-step, {adapted} adapted, {fig['inner_steps']} inner steps, {size} model",
                         f"{fig['algorithms']['fomaml']['tasks_per_s']:.2f} tasks/s, "
                         f"{fig['speedup_vs_reference']:.2f}x the official-style step{verdict}"])
    inference = load(results, "inference")
    if inference:
        figures = inference["figures"]
        for size, fig in figures.items():
            if not isinstance(fig, dict) or "cases" not in fig:
                continue
            cases, hop = fig["cases"], fig["chosen_hop_steps"]
            network = cases[f"network/hop{hop}"]
            former = cases.get(f"network/hop{fig['window_steps'] // 6}")
            rows.append([f"inference real-time factor, {size} model, batch 1, hop {hop} (window / 2)",
                         ", ".join(f"{c.split('/')[0]} song {fmt(cases[c]['real_time_factor'])}x" for c in cases
                                   if c.endswith(f"/hop{hop}") and not c.startswith("network"))
                         + f"; network x{network['cost_ratio']:.2f} the once-per-step floor"
                         + (f" (hop {former['hop_steps']}: x{former['cost_ratio']:.2f})" if former else "")])
            folder = cases.get("folder")
            if folder:
                rows.append([f"folder of {folder['files']} x 45 s, {size} model",
                             f"batched {fmt(folder['batched_rtf'])}x vs one file at a time "
                             f"{fmt(folder['one_at_a_time_rtf'])}x real time"])
        cli = figures.get("cli")
        if cli:
            rows.append([f"`dsaml predict`, {cli['model']} model: cold start (one 45 s file) and peak RSS",
                         f"{cli['45s']['wall_s']:.2f} s; peak RSS 45 s {cli['45s']['peak_rss_mib']:.0f} MiB, "
                         + ", ".join(f"{k} {v['peak_rss_mib']:.0f} MiB" for k, v in cli.items()
                                     if isinstance(v, dict) and k != "45s")
                         + f" (x{cli['long_over_short_peak_rss']:.2f})"])
    hop = load(results, "window_hop")
    if hop:
        f = hop["figures"]
        by = {c["hop_steps"]: c for c in f["curve"]}
        chosen, ref = by[f["chosen_hop_steps"]], by[f["reference_hop_steps"]]
        rows.append([f"sliding-window hop, main job model, {f['partition']} listeners",
                     f"hop {chosen['hop_steps']}: RMSE {chosen['rmse']:.4f}, CCC {chosen['ccc']:.4f} vs hop "
                     f"{ref['hop_steps']}: {ref['rmse']:.4f}, {ref['ccc']:.4f}, at "
                     f"{chosen['windows_per_step'] / ref['windows_per_step']:.2f}x its window forwards"])
    personalization = load(results, "personalization")
    if personalization:
        for size, f in personalization["figures"].items():
            rows.append([f"personalization from one 30 s song, {size} model",
                         f"{f['end_to_end_s']:.2f} s ({f['adaptation_steps']} steps, all parameters); "
                         f"{f['predictor_only_adapt_s']:.2f} s adapting the predictor only"])
    accuracy = load(results, "accuracy")
    if accuracy:
        f = accuracy["figures"]
        sm = f["summary"]
        gap = sm.get("gap_closed/after/overall")
        rows.append([f"accuracy, `{f['dataset']}` {f['partition']} listeners ({f['annotators']} x "
                     f"{f['support_repeats']} support songs)",
                     f"CCC {sm['before/ccc']:.3f} -> {sm['after/ccc']:.3f}, RMSE {sm['before/rmse']:.3f} -> "
                     f"{sm['after/rmse']:.3f} after 1-shot personalization"
                     + (f" ({gap:+.0%} of the gap to the listener oracle)" if gap is not None else "")])
    vgmidi = load(results, "vgmidi")
    if vgmidi:
        f = vgmidi["figures"]
        sm, e = f["personalization"]["methods"], f["personalization"]["effect"]
        rows.append([f"real listeners, VGMIDI {f['partition']} ({f['personalization']['listeners']} listeners x 2 "
                     "directions), RMSE arousal / valence",
                     " -> ".join(f"{sm[m]['arousal_rmse']['mean']:.3f} / {sm[m]['valence_rmse']['mean']:.3f}"
                                 for m in ("before", "after"))
                     + f" after 1-shot personalization (crowd of the other listeners: "
                       f"{sm['crowd']['arousal_rmse']['mean']:.3f} / {sm['crowd']['valence_rmse']['mean']:.3f})"])
    loading = load(results, "dataset_loading")
    if loading:
        f = loading["figures"]
        rows.append([f"`load_dataset`, one annotator split of {f['annotator_splits']}",
                     f"{f['one_split']['cold_s']:.2f} s cold, {f['one_split']['warm_s']:.2f} s warm"])
    return table(["benchmark (CPU, 2 threads)", "result"], rows)


def update_readme(readme: Path, lines: list[str], marker: str = "benchmarks") -> None:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{readme}: missing the {start} / {end} markers")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + tail)
    print(f"updated {readme}")


SECTIONS = [("meta_step", meta_section), ("inference", inference_section), ("window_hop", window_hop_section),
            ("window_hop_long", window_hop_section),
            ("personalization", personalization_section), ("vgmidi", vgmidi_section),
            ("dataset_loading", loading_section)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--readme", type=Path, default=HERE.parent / "README.md", help="README to update (the summary)")
    args = p.parse_args()
    _RESULTS.append(args.results)
    lines = ["# Benchmark results", "",
             "Generated by `python benchmarks/make_table.py` from `benchmarks/results/*.json`; every figure was "
             "measured on the machine named under its table (CPU only). Rerun: see benchmarks/README.md.", "",
             "**Conditions.** 2 CPU cores shared with other jobs; the 1-min load average at the end of each run is "
             "printed under its table. Runs made while the load was 4-9 were up to 20x slower, with the same "
             "call varying by as much between repeats; the figures below were measured when the machine was "
             "quiet (load about 1-2). Compare figures measured back to back (the ours/reference pairs) rather "
             "than absolute times across tables.", ""]
    missing = []
    for name, render in SECTIONS:
        doc = load(args.results, name)
        if doc is None:
            missing.append(name)
            continue
        lines += render(doc)
    for doc in accuracy_docs(args.results):
        lines += accuracy_section(doc)
    if missing:
        lines += ["Not yet measured: " + ", ".join(f"`{m}.py`" for m in missing) + ".", ""]
    args.output.write_text("\n".join(lines))
    print(f"wrote {args.output}")
    if args.readme is not None:
        update_readme(args.readme, readme_summary(args.results))
        if accuracy_docs(args.results):
            update_readme(args.readme, accuracy_readme(args.results), marker="accuracy")
        vgmidi = load(args.results, "vgmidi")
        if vgmidi:
            update_readme(args.readme, vgmidi_tables(vgmidi), marker="vgmidi")


if __name__ == "__main__":
    main()
