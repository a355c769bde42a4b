"""The figures dsaml writes (prediction curves, before/after scores, training curves) as PNG files.

Each figure is a `matplotlib.figure.Figure` drawn and saved on its own (`Figure.savefig` renders with the Agg
canvas): the global pyplot state and the caller's backend (e.g. a notebook's) are never touched.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dsaml.utils.files import atomic_path

__all__ = ["plot_before_after", "plot_curves", "plot_training"]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def plot_curves(frame, path: str | os.PathLike, title: str = "") -> Path:
    """PNG with two panels: arousal/valence over time, and the trajectory on the valence-arousal plane."""
    fig = _figure(12, 4.2)
    ax_t, ax_va = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    t = frame["time_seconds"].to_numpy()
    ax_t.plot(t, frame["arousal"], label="arousal", color="tab:red")
    ax_t.plot(t, frame["valence"], label="valence", color="tab:blue")
    ax_t.axhline(0, color="0.7", lw=0.8)
    ax_t.set_xlabel("time (s)")
    ax_t.set_ylabel("value")
    ax_t.set_title("arousal and valence over time")
    ax_t.legend(loc="upper right")
    v, a = frame["valence"].to_numpy(), frame["arousal"].to_numpy()
    points = ax_va.scatter(v, a, c=t, cmap="viridis", s=10, zorder=3)
    ax_va.plot(v, a, color="0.6", lw=0.6, zorder=2)
    lim = max(1.0, float(np.abs(np.concatenate([v, a])).max()) * 1.05) if len(v) else 1.0
    ax_va.set_xlim(-lim, lim)
    ax_va.set_ylim(-lim, lim)
    ax_va.axhline(0, color="0.7", lw=0.8)
    ax_va.axvline(0, color="0.7", lw=0.8)
    ax_va.set_xlabel("valence")
    ax_va.set_ylabel("arousal")
    ax_va.set_title("valence-arousal plane")
    ax_va.set_aspect("equal")
    fig.colorbar(points, ax=ax_va, label="time (s)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)


def plot_before_after(records: Sequence[dict], path: str | os.PathLike, score: str = "ccc") -> Path:
    """Scatter of each annotator's score before (x) vs after (y) personalization, and the per-annotator bars
    (`records`: `TaskResult.flat()` records)."""
    before = np.array([r[f"before/{score}"] for r in records])
    after = np.array([r[f"after/{score}"] for r in records])
    names = [r["annotator"] for r in records]
    fig = _figure(12, 4.5)
    ax_s, ax_b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    low, high = float(min(before.min(), after.min())), float(max(before.max(), after.max()))
    pad = 0.05 * (high - low or 1)
    ax_s.plot([low - pad, high + pad], [low - pad, high + pad], color="0.6", lw=0.8)
    ax_s.scatter(before, after, color="tab:purple")
    ax_s.set_xlabel(f"{score.upper()} before personalization")
    ax_s.set_ylabel(f"{score.upper()} after personalization")
    ax_s.set_title("per annotator")
    x = np.arange(len(records))
    ax_b.bar(x - 0.2, before, 0.4, label="before")
    ax_b.bar(x + 0.2, after, 0.4, label="after")
    ax_b.set_xticks(x, names, rotation=90 if len(names) > 12 else 0, fontsize=7 if len(names) > 12 else 9)
    ax_b.set_ylabel(score.upper())
    ax_b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)


def plot_training(records: list[dict], path: str | os.PathLike) -> Path | None:
    """Query loss over steps, and validation CCC / RMSE before and after personalization (`metrics.jsonl`
    records); written atomically, nothing when there are no records."""
    if not records:
        return None
    fig = _figure(13, 3.6)
    axes = fig.subplots(1, 3)
    steps = [r["step"] for r in records]
    axes[0].plot(steps, [r["train/query_loss"] for r in records], lw=1)
    axes[0].set(title="meta-training query loss", xlabel="outer step")
    for ax, key in zip(axes[1:], ("ccc", "rmse")):
        for stage, style in (("before", "--"), ("after", "-")):
            points = [(r["step"], r[f"validation/{stage}/{key}"]) for r in records if f"validation/{stage}/{key}" in r]
            if points:
                ax.plot(*zip(*points), style, marker="o", label=f"{stage} personalization")
        ax.set(title=f"validation {key.upper()}", xlabel="outer step")
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return Path(path)
