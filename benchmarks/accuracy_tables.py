"""The accuracy tables: personalization of the synthetic listeners (every config's model, every partition) with the
DMER line, and VGMIDI's real listeners."""

from __future__ import annotations

import json
from pathlib import Path

from table_format import RESULTS, ci, load, source, table

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
            + share_sentence(recipe_of(f)["share"], "song", recipe_of(f)["max_delay"]))


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
    """One model on one partition; on the test partition, the DMER line of the same config's model."""
    f = doc["figures"]
    out = [f"## Accuracy on synthetic PDMER (`accuracy.py`): {accuracy_title(f)}", "",
           f"Model: the {f['model']}; {accuracy_protocol(f)} The share of the gap to the listener oracle each "
           "method closes is per dimension.", ""]
    out += accuracy_table(f) + [""]
    if f["partition"] == "test":
        dmer = dmer_lines(load(RESULTS, "_".join(x for x in ("dmer", f.get("label")) if x)))
        out += dmer + [""] * bool(dmer)
    return out + [source(doc), ""]


def dmer_lines(doc: dict | None) -> list[str]:
    if doc is None:
        return []
    f, d = doc["figures"], doc["figures"]["dmer"]
    dims = ("arousal", "valence")
    return [f"DMER, the unpersonalized model ({f['model']}) on the {d['pieces']} {f['partition']} songs of `dmer` "
            "(their averaged labels): "
            + "; ".join(f"{dim} pooled r {ci(d[dim]['pooled_pearson'])}, RMSE {ci(d[dim]['model_rmse'])} "
                        f"(constant {d[dim]['constant_rmse']['mean']:.3f})" for dim in dims)
            + f" [95 % bootstrap interval over songs; `{doc['command']}`]."]


VGMIDI_METHODS = {"before": "unpersonalized", "after": "1-shot personalized (inner loop)",
                  "crowd": "crowd of the other listeners", "shift": "shift (support piece)",
                  "linear": "shrunk linear (support piece)"}


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
