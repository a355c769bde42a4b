"""What a build dropped and why: counted by reason, logged as it happens, summarised at the end, and written to
`build_report.json` and the dataset card, so a published dataset says exactly which data it left out.

Two kinds of drop are kept apart:
- `problem`: something wrong with the source data (missing or unreadable file, malformed row, NaN inside a
  curve, out-of-range value, audio shorter than its annotation, duplicate rater, ...). `strict=True` turns the
  first one into a `DatasetBuildError`.
- `filter`: a protocol rule applied on purpose (flat curves, annotators with too few songs, files without rater
  ids, ...). Never an error.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from dsaml.errors import DatasetBuildError

logger = logging.getLogger("dsaml.datasets")

MAX_EXAMPLES = 5  # examples kept (and logged as warnings) per reason; the rest are counted and logged at DEBUG


class DropReport:
    def __init__(self, *, strict: bool = False):
        self.strict = strict
        self.dropped: dict[str, Counter] = defaultdict(Counter)  # scope -> reason -> count
        self.kinds: dict[str, str] = {}  # reason -> "problem" | "filter"
        self.notes: Counter = Counter()  # reason -> count, for fixes that keep the data (e.g. trimmed tails)
        self.examples: dict[str, list[str]] = defaultdict(list)

    def _remember(self, reason: str, detail: str, level: int) -> None:
        if len(self.examples[reason]) < MAX_EXAMPLES:
            self.examples[reason].append(detail)
            logger.log(level, "%s: %s", reason, detail)
        else:
            logger.debug("%s: %s", reason, detail)

    def problem(self, scope: str, reason: str, detail: str, count: int = 1) -> None:
        """Source data that cannot be used: skipped (logged), or an error in strict mode."""
        if self.strict:
            raise DatasetBuildError(f"{detail}: {reason}")
        self.dropped[scope][reason] += count
        self.kinds[reason] = "problem"
        self._remember(reason, detail, logging.WARNING)

    def filtered(self, scope: str, reason: str, detail: str, count: int = 1) -> None:
        """Data left out by a protocol rule."""
        self.dropped[scope][reason] += count
        self.kinds[reason] = "filter"
        self._remember(reason, detail, logging.INFO)

    def note(self, reason: str, detail: str, count: int = 1) -> None:
        """A repair that keeps the data (recorded so the card can say what was changed)."""
        self.notes[reason] += count
        self._remember(reason, detail, logging.INFO)

    def total(self, scope: str | None = None) -> int:
        scopes = [scope] if scope else list(self.dropped)
        return sum(sum(self.dropped[s].values()) for s in scopes)

    def summary_lines(self) -> list[str]:
        lines = []
        for scope in sorted(self.dropped):
            for reason, count in self.dropped[scope].most_common():
                lines.append(f"{scope}: dropped {count} x {reason} ({self.kinds[reason]})")
        for reason, count in self.notes.most_common():
            lines.append(f"note: {count} x {reason}")
        return lines

    def log_summary(self) -> None:
        lines = self.summary_lines()
        if not lines:
            logger.info("build report: nothing dropped")
            return
        level = logging.WARNING if any(k == "problem" for k in self.kinds.values()) else logging.INFO
        logger.log(level, "build report:\n  %s", "\n  ".join(lines))

    def to_dict(self) -> dict:
        return {
            "dropped": {
                scope: [
                    {"reason": reason, "kind": self.kinds[reason], "count": count}
                    for reason, count in counts.most_common()
                ]
                for scope, counts in sorted(self.dropped.items())
            },
            "notes": [{"reason": reason, "count": count} for reason, count in self.notes.most_common()],
            "examples": {reason: list(details) for reason, details in self.examples.items()},
        }
