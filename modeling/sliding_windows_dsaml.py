"""Sliding-window prediction of songs of any length, with the steps arriving in order: the one blending path.

A song longer than the training window is predicted by windows of `window` steps every `hop` steps (the last
flush with the end, `window_starts`), their overlapping predictions blended with a tapered weight
(`window_weights`). `StreamingPrediction` runs that schedule while the song's steps are still arriving, so
memory holds about one window of steps whatever the song's length, and it computes the window-independent part
of the network (the local CNN of each step, its spectral summary) once per step instead of once per window
covering it: a step's own patch gives the same values in every window. `predict_long` and `dsaml predict` both
go through it, so a whole song and a streamed one get the same windows and the same sums.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["SongWindows", "StreamedSong", "StreamingPrediction", "window_starts", "window_weights"]


def window_starts(num_steps: int, window_steps: int, hop_steps: int | None = None) -> list[int]:
    """Start steps of `window_steps`-long windows every `hop_steps` (default: back to back), the last one flush
    with the end. A song no longer than one window gives the single start 0. Long-song inference and the
    library's windowing of support songs (`dsaml.data.alignment.windows`) both cut songs here."""
    if num_steps <= window_steps:
        return [0]
    hop = hop_steps or window_steps
    starts = list(range(0, num_steps - window_steps + 1, hop))
    if starts[-1] != num_steps - window_steps:
        starts.append(num_steps - window_steps)
    return starts


def window_weights(length: int, window: int, device=None) -> torch.Tensor:
    """`[length, 1]` blending weights of one window's steps: a Hann taper (floored at 1e-3, so a step only an
    edge covers still gets its prediction) for a full window, so window edges, which see one-sided context,
    count less; ones for the single shorter window of a song shorter than `window`."""
    if length != window:
        return torch.ones(length, 1, device=device)
    return torch.hann_window(window + 2, periodic=False, device=device)[1:-1].clamp_min(1e-3)[:, None]


class SongWindows:
    """One song's windows, scheduled as its steps arrive and blended as their predictions come back.

    `extend(count)` records `count` more steps and returns the starts of the windows they complete (on the
    hop grid); `finish()` ends the song and returns its last window (flush with the end, or the whole song when
    it is shorter than a window), if not already scheduled. `add(start, logits)` blends a window in;
    `pop()` returns the blended predictions of the steps no window still to come can cover. Over a whole song
    these are exactly the windows of `window_starts` and the sums of their weighted predictions.
    """

    def __init__(self, window: int, hop: int):
        if window <= 0 or hop <= 0:
            raise ValueError(f"window_steps and hop_steps must be > 0, got {window}, {hop}")
        self.window, self.hop = window, hop
        self.received = 0
        self.finished = False
        self.next_start = 0  # the next start on the hop grid not yet scheduled
        self.outstanding: dict[int, int] = {}  # scheduled windows not yet added: start -> length
        self.emitted = 0  # steps returned by `pop`; the accumulators begin there
        self.total = torch.zeros(0, 2)
        self.weight = torch.zeros(0, 1)

    def extend(self, count: int) -> list[int]:
        if self.finished:
            raise RuntimeError("the song is finished")
        self.received += count
        starts = []
        while self.next_start + self.window <= self.received:
            starts.append(self.next_start)
            self.next_start += self.hop
        self.outstanding.update((s, self.window) for s in starts)
        return starts

    def finish(self) -> list[tuple[int, int]]:
        """The song's remaining `(start, length)` window, if any."""
        if self.finished:
            return []
        self.finished = True
        if self.received == 0:
            return []
        if self.received < self.window:
            last = (0, self.received)
        elif (self.received - self.window) % self.hop == 0:
            return []  # a window of the hop grid already ends at the song's end
        else:
            last = (self.received - self.window, self.window)
        self.outstanding[last[0]] = last[1]
        return [last]

    def add(self, start: int, logits: torch.Tensor) -> None:
        """Blend the `[length, 2]` prediction of the window at `start` in."""
        length = self.outstanding.pop(start)
        end = start + length - self.emitted
        if end > self.total.shape[0]:
            grow = end - self.total.shape[0]
            self.total = torch.cat([self.total.to(logits.device), logits.new_zeros(grow, 2, dtype=torch.float32)])
            self.weight = torch.cat([self.weight.to(logits.device), logits.new_zeros(grow, 1, dtype=torch.float32)])
        w = window_weights(length, self.window, logits.device)
        self.total[start - self.emitted : end] += logits.float() * w
        self.weight[start - self.emitted : end] += w

    def final_step(self) -> int:
        """Steps before this one are final: no window still outstanding or still to come covers them."""
        bound = self.received if self.finished else max(0, self.received - self.window)
        if self.outstanding:
            bound = min(bound, min(self.outstanding))
        return max(bound, self.emitted)

    def pop(self) -> torch.Tensor:
        """`[k, 2]`: the blended predictions of the next `k` final steps (possibly none)."""
        count = self.final_step() - self.emitted
        out = self.total[:count] / self.weight[:count].clamp_min(1e-12)
        self.total, self.weight = self.total[count:], self.weight[count:]
        self.emitted += count
        return out

    @property
    def done(self) -> bool:
        return self.finished and not self.outstanding and self.emitted == self.received


class StreamedSong:
    """A song being predicted: its window schedule and the per-step inputs its outstanding windows need."""

    def __init__(self, window: int, hop: int):
        self.windows = SongWindows(window, hop)
        self.buffer: dict[str, torch.Tensor] = {}  # name -> [steps, ...] from step `buffer_start` on
        self.buffer_start = 0

    def append(self, encoded: dict[str, torch.Tensor]) -> None:
        for name, value in encoded.items():
            old = self.buffer.get(name)
            self.buffer[name] = value if old is None else torch.cat([old, value])

    def window(self, start: int, length: int) -> dict[str, torch.Tensor]:
        a = start - self.buffer_start
        return {name: value[a : a + length] for name, value in self.buffer.items()}

    def trim(self) -> None:
        """Drop the steps no outstanding or future window reads."""
        w = self.windows
        # unfinished, the song's last window may still start `window` steps before its current end
        keep = w.received if w.finished else max(0, w.received - w.window)
        if w.outstanding:
            keep = min(keep, min(w.outstanding))
        drop = keep - self.buffer_start
        if drop > 0:
            self.buffer = {name: value[drop:].clone() for name, value in self.buffer.items()}  # no view pins the rest
            self.buffer_start = keep


class StreamingPrediction:
    """Sliding-window predictions of any number of songs whose per-step inputs arrive in blocks.

    `open()` returns a song handle; `push(song, inputs)` takes the next steps' model inputs (`input_features`
    `[steps, frames, mels]`, and `harmonic_features` `[steps, 38]` / `global_input_values` `[steps,
    samples_per_step]` when the model takes them); `finish(song)` ends a song; `pop(song)` returns the blended
    `[k, 2]` predictions of its steps that are final so far; `flush()` runs every window still waiting.
    Windows complete in any open song wait in a queue and run in mini-batches of `batch_size` equal-length
    windows (`batch_size` may be changed between pushes; `on_batch(windows, seconds)` is told each run's time).
    Call `model.eval()` first for deterministic output.
    """

    def __init__(self, model, window: int, hop: int, batch_size: int = 1,
                 on_batch: Callable[[int, float], None] | None = None):
        SongWindows(window, hop)  # validates window and hop
        self.model, self.window, self.hop = model, window, hop
        self.batch_size = batch_size
        self.on_batch = on_batch
        # window length -> the (song, ticket, start) of the windows waiting to run
        self.queue: dict[int, list[tuple[StreamedSong, int, int]]] = {}
        self._ticket = 0  # arrival order of the waiting windows

    def open(self) -> StreamedSong:
        return StreamedSong(self.window, self.hop)

    @torch.no_grad()
    def push(self, song: StreamedSong, inputs: dict[str, torch.Tensor]) -> None:
        features = inputs["input_features"]
        if features.shape[0] == 0:
            return
        song.append(self.model.encode_steps(features, inputs.get("harmonic_features"),
                                            inputs.get("global_input_values")))
        self._schedule(song, [(s, self.window) for s in song.windows.extend(features.shape[0])])

    def finish(self, song: StreamedSong) -> None:
        self._schedule(song, song.windows.finish())

    def cancel(self, song: StreamedSong) -> None:
        """Forget a song (e.g. its file turned out unusable): its waiting windows are dropped."""
        for length, waiting in self.queue.items():
            self.queue[length] = [job for job in waiting if job[0] is not song]
        song.windows.outstanding.clear()
        song.buffer = {}

    def pop(self, song: StreamedSong) -> torch.Tensor:
        return song.windows.pop()

    def flush(self) -> None:
        for length in list(self.queue):
            while self.queue.get(length):
                self._run(length)

    def _schedule(self, song: StreamedSong, jobs: list[tuple[int, int]]) -> None:
        for start, length in jobs:
            self.queue.setdefault(length, []).append((song, self._ticket, start))
            self._ticket += 1
            if len(self.queue[length]) >= self.batch_size:
                self._run(length)
            elif sum(map(len, self.queue.values())) >= 2 * self.batch_size:
                # windows of rare lengths (the one window of each song shorter than `window`) seldom fill a
                # batch: run the oldest waiting group rather than hold their songs (and results) to the end
                self._run(min((jobs[0][1], n) for n, jobs in self.queue.items() if jobs)[1])

    @torch.no_grad()
    def _run(self, length: int) -> None:
        jobs, self.queue[length] = self.queue[length][: self.batch_size], self.queue[length][self.batch_size :]
        windows = [song.window(start, length) for song, _, start in jobs]
        batch = {name: torch.stack([w[name] for w in windows]) for name in windows[0]}
        clock = time.perf_counter()
        logits = self.model.window_logits(**batch)
        if self.on_batch is not None:
            self.on_batch(len(jobs), time.perf_counter() - clock)
        for (song, _, start), pred in zip(jobs, logits):
            song.windows.add(start, pred)
        for song in {id(s): s for s, _, _ in jobs}.values():
            song.trim()
