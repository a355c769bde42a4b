"""A partition's results summed up: the mean over listeners of every method's scores, and its console table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dsaml.evaluation.protocol import TaskResult
from dsaml.evaluation.recalibration import gap_closed
from dsaml.evaluation.scores import DIMENSIONS_SCORED

__all__ = ["METHOD_LABELS", "format_summary", "summarize"]


def summarize(results: Sequence[TaskResult], prefix: str | None = None) -> dict[str, float]:
    """Mean over annotators (each weighs the same; an annotator's repeats with other support songs are averaged
    first) of every score of every method: `before/ccc`, `after/rmse`, `shift/valence_rmse`, ...; how many
    annotators personalization improved (`annotators_rmse_improved`, `annotators_ccc_improved`) and made worse
    by more than 0.01 RMSE (`annotators_rmse_worse`); with an oracle, the share of the gap to it each method
    closes, `gap_closed/<method>/<arousal|valence|overall>` (`dsaml.evaluation.recalibration.gap_closed` of the means).
    Each key under `prefix/` when given (e.g. `validation/after/ccc`)."""
    by_annotator: dict[str, list[dict]] = {}
    for result in results:
        by_annotator.setdefault(result.annotator, []).append(result.flat())
    keys = [k for k, v in next(iter(by_annotator.values()))[0].items()
            if "/" in k and isinstance(v, (int, float)) and not k.startswith("support_")]
    records = [{k: float(np.mean([r[k] for r in rows])) for k in keys} for rows in by_annotator.values()]
    summary = {k: float(np.mean([r[k] for r in records])) for k in keys}
    summary["annotators"] = len(records)
    summary["tasks"] = len(results)
    summary["annotators_rmse_improved"] = int(sum(r["after/rmse"] < r["before/rmse"] for r in records))
    summary["annotators_ccc_improved"] = int(sum(r["after/ccc"] > r["before/ccc"] for r in records))
    summary["annotators_rmse_worse"] = int(sum(r["after/rmse"] > r["before/rmse"] + 0.01 for r in records))
    if "oracle/rmse" in summary:
        methods = sorted({k.split("/")[0] for k in keys} - {"before", "oracle"})
        for method in methods:
            for dim, key in DIMENSIONS_SCORED:
                summary[f"gap_closed/{method}/{dim}"] = gap_closed(
                    summary[f"before/{key}"], summary[f"{method}/{key}"], summary[f"oracle/{key}"])
    return {f"{prefix}/{k}" if prefix else k: v for k, v in summary.items()}


METHOD_LABELS = {
    "before": "before personalization",
    "after": "after  personalization",
    "shift": "shift (support song)",
    "linear": "linear (support song)",
    "population": "population emotion",
    "crowd": "crowd (other listeners)",
    "oracle": "listener oracle",
}


def format_summary(summary: dict, title: str = "") -> str:
    """The console table of a `summarize` result (unprefixed keys): every method's RMSE (overall, arousal,
    valence), Pearson r and CCC, and the gap to the oracle it closes where there is one."""
    tasks = summary.get("tasks", summary["annotators"])
    head = f"{title} ({summary['annotators']} annotators" + (f", {tasks} tasks)" if tasks != summary["annotators"]
                                                            else ")") + ":"
    has_gap = any(k.startswith("gap_closed/") for k in summary)
    lines = [head, f"  {'method':<24}{'RMSE':>7}{'A':>7}{'V':>7}{'PCC':>7}{'CCC':>7}"
             + ("   gap closed A / V / overall" if has_gap else "")]
    for method, label in METHOD_LABELS.items():
        if f"{method}/rmse" not in summary:
            continue
        row = f"  {label:<24}" + "".join(f"{summary[f'{method}/{k}']:>7.3f}"
                                         for k in ("rmse", "arousal_rmse", "valence_rmse", "pearson", "ccc"))
        if has_gap and f"gap_closed/{method}/overall" in summary:
            row += "   " + " / ".join(f"{summary[f'gap_closed/{method}/{d}']:+.0%}"
                                      for d in ("arousal", "valence", "overall"))
        lines.append(row)
    if "annotators_rmse_worse" in summary:
        lines.append(f"  personalization: RMSE better for {summary['annotators_rmse_improved']}, worse by > 0.01 for "
                     f"{summary['annotators_rmse_worse']} of {summary['annotators']} annotators; CCC better for "
                     f"{summary['annotators_ccc_improved']}")
    return "\n".join(lines)
