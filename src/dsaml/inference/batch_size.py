"""The window batch size that pays on this machine, measured on the prediction's own first windows.

Whether stacking sliding windows into one forward pass saves time depends on the CPU, its load, the thread
count and the model's width (on the 2-core machine of the README, batches of 32 were slower than one window at
a time). So it is not assumed: `BatchSizeTuner` hands out each candidate size in turn for the first batches,
timing real work (no extra forward passes), then keeps the size with the least time per window.
"""

from __future__ import annotations

__all__ = ["CANDIDATES", "BatchSizeTuner"]

CANDIDATES = (1, 2, 4, 8, 16)
# A larger batch must save this share of the time per window to be preferred (timings on a shared machine
# jitter by a few per cent; a larger batch also holds more steps in memory).
MARGIN = 0.05


class BatchSizeTuner:
    """`size()`: the batch size to run next; `record(windows, seconds)`: a run's timing.

    The candidates are tried in turn, `rounds` times each (interleaved, so warm-up and changes in load fall on
    all of them alike; the first run only warms up). A run that got fewer windows than asked (the end of the
    input) is not counted. After that the choice is the candidate with the least best-of-rounds time per
    window, a smaller one unless a larger saves more than `MARGIN`."""

    def __init__(self, candidates: tuple[int, ...] = CANDIDATES, rounds: int = 2):
        self.candidates = tuple(sorted(candidates))
        self.plan = [self.candidates[0]] + [c for _ in range(rounds) for c in self.candidates]
        self.warm = False
        self.per_window: dict[int, float] = {}
        self.chosen: int | None = None if len(self.candidates) > 1 else self.candidates[0]

    def size(self) -> int:
        return self.chosen if self.chosen is not None else self.plan[0]

    def record(self, windows: int, seconds: float) -> None:
        if self.chosen is not None or windows != self.plan[0]:
            return
        self.plan.pop(0)
        if not self.warm:
            self.warm = True
        else:
            best = self.per_window.get(windows, float("inf"))
            self.per_window[windows] = min(best, seconds / windows)
        if not self.plan:
            self.chosen = self.choose(self.per_window)

    @staticmethod
    def choose(per_window: dict[int, float]) -> int:
        """The smallest size whose time per window is within `MARGIN` of the least."""
        fastest = min(per_window.values())
        return min(size for size, t in per_window.items() if t <= fastest * (1 + MARGIN))
