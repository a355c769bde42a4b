"""What every results table shares: reading a result file, formatting numbers, markdown tables, the line that
says which command and machine made a table (no date or load: those stay in the JSON)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


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
    """`command` and the machine that made a table: CPU, torch and its threads (the date and the machine's load
    stay in the result file, for whoever compares timings)."""
    m = doc["machine"]
    quick = " (--quick)" if doc.get("quick") else ""
    threads = m["torch_threads"]
    return (f"_`python benchmarks/{doc['command']}`{quick}; {m.get('cpu_model', m.get('processor'))}, torch "
            f"{m['torch'].split('+')[0]} with {threads} thread{'s' if threads != 1 else ''}._")


def ci(c: dict, digits: int = 3) -> str:
    return f"{c['mean']:.{digits}f} [{c['low']:.{digits}f}, {c['high']:.{digits}f}]"
