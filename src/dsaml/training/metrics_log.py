"""`metrics.jsonl`: one JSON line per logged step, written by the main process, cut back on resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from dsaml.utils.files import atomic_write_text

logger = logging.getLogger("dsaml.training.loop")

__all__ = ["MetricsLog"]


class MetricsLog:
    """metrics.jsonl (main process), resumable: lines after the resumed step are dropped, and so is a torn last
    line (a run killed while appending), which is the only line that can be incomplete."""

    def __init__(self, path: Path, resume_step: int, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        if enabled and path.is_file():
            kept = [r for r in self.read() if r.get("step", 0) <= resume_step]
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, step: int, values: dict) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")  # one write of one whole line

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        records = []
        for i, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i < len(lines) - 1:
                    raise ValueError(f"{self.path}: line {i + 1} is not JSON (only a torn last line is tolerated)")
                logger.warning("%s: dropping a torn last line", self.path)
        return records
