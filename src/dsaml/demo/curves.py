"""The demo page's view of a song: its player and one card of curves per model, as HTML with inline SVG.

Drawn as SVG text on the server, not as images or with a plotting library in the browser, so the page needs no
script or font from elsewhere and the numbers stay readable from the page: each card carries its curves in
`data-arousal` / `data-valence` attributes. The page's script (`page.js`) moves a marker along the curves as the
song plays, from the SVG coordinates each plot carries (`data-x0`, `data-x1`, `data-duration` on the time plot,
`data-points` on the valence-arousal plane).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np

__all__ = ["Card", "empty_view", "song_view"]

TIME_W, TIME_H, PAD_L, PAD_R, PAD_T, PAD_B = 520, 200, 38, 10, 10, 28
PLANE = 220  # side of the valence-arousal plane, margins included
PLANE_PAD = 26
LIMIT = 1.0  # the annotation range: values are drawn clipped to it
COLORS = {"arousal": "#d62728", "valence": "#1f77b4"}


@dataclass(frozen=True)
class Card:
    """One model's curves for the song: `frame` has `time_seconds`, `arousal`, `valence` (`dsaml.inference.files`)."""

    who: str  # "base" or the listener's name: the card's `data-who`
    title: str
    frame: object  # pandas.DataFrame


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def _y(value: np.ndarray | float) -> np.ndarray | float:
    inner = TIME_H - PAD_T - PAD_B
    return PAD_T + (LIMIT - np.clip(value, -LIMIT, LIMIT)) / (2 * LIMIT) * inner


def _time_plot(t: np.ndarray, curves: dict[str, np.ndarray], duration: float, step_seconds: float) -> str:
    x0, x1 = PAD_L, TIME_W - PAD_R
    x = x0 + (t + step_seconds / 2) / duration * (x1 - x0)  # a step's value drawn at its middle
    parts = [f'<svg class="dsaml-time" viewBox="0 0 {TIME_W} {TIME_H}" role="img" '
             f'aria-label="arousal and valence over time" data-x0="{x0}" data-x1="{x1}" '
             f'data-duration="{duration:.3f}">']
    for level in (-1.0, -0.5, 0.0, 0.5, 1.0):
        y = _fmt(_y(level))
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y}" y2="{y}" class="dsaml-grid{" dsaml-zero" if level == 0 else ""}"/>')
        parts.append(f'<text x="{x0 - 4}" y="{y}" class="dsaml-tick" text-anchor="end" dominant-baseline="middle">'
                     f'{level:+.1f}</text>')
    tick = 5.0 if duration <= 60 else 30.0 if duration <= 300 else 60.0
    for second in np.arange(0.0, duration + 1e-9, tick):
        xs = _fmt(x0 + second / duration * (x1 - x0))
        parts.append(f'<text x="{xs}" y="{TIME_H - PAD_B + 14}" class="dsaml-tick" text-anchor="middle">'
                     f'{second:g}</text>')
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{TIME_H - 2}" class="dsaml-axis" text-anchor="middle">time (s)</text>')
    for name, values in curves.items():
        points = " ".join(f"{_fmt(a)},{_fmt(b)}" for a, b in zip(x, _y(values)))
        parts.append(f'<polyline class="dsaml-{name}" fill="none" stroke="{COLORS[name]}" stroke-width="2" '
                     f'points="{points}"/>')
    for i, name in enumerate(curves):
        parts.append(f'<text x="{x1 - 70 * (len(curves) - i)}" y="{PAD_T + 12}" fill="{COLORS[name]}" '
                     f'class="dsaml-legend">{name}</text>')
    parts.append(f'<line class="dsaml-now" x1="{x0}" x2="{x0}" y1="{PAD_T}" y2="{TIME_H - PAD_B}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _plane(valence: np.ndarray, arousal: np.ndarray) -> str:
    inner = PLANE - 2 * PLANE_PAD
    px = PLANE_PAD + (np.clip(valence, -LIMIT, LIMIT) + LIMIT) / (2 * LIMIT) * inner
    py = PLANE_PAD + (LIMIT - np.clip(arousal, -LIMIT, LIMIT)) / (2 * LIMIT) * inner
    points = " ".join(f"{_fmt(a)},{_fmt(b)}" for a, b in zip(px, py))
    mid, low, high = PLANE / 2, PLANE_PAD, PLANE - PLANE_PAD
    start = f"{_fmt(px[0])},{_fmt(py[0])}" if len(px) else f"{mid},{mid}"
    cx, cy = start.split(",")
    return "".join([
        f'<svg class="dsaml-plane" viewBox="0 0 {PLANE} {PLANE}" role="img" '
        f'aria-label="trajectory on the valence-arousal plane" data-points="{points}">',
        f'<rect x="{low}" y="{low}" width="{inner}" height="{inner}" class="dsaml-frame"/>',
        f'<line x1="{low}" x2="{high}" y1="{mid}" y2="{mid}" class="dsaml-grid dsaml-zero"/>',
        f'<line x1="{mid}" x2="{mid}" y1="{low}" y2="{high}" class="dsaml-grid dsaml-zero"/>',
        f'<text x="{mid}" y="{low - 8}" class="dsaml-axis" text-anchor="middle">aroused</text>',
        f'<text x="{mid}" y="{high + 16}" class="dsaml-axis" text-anchor="middle">calm</text>',
        f'<text x="{low - 4}" y="{mid - 6}" class="dsaml-axis" text-anchor="start">negative</text>',
        f'<text x="{high + 4}" y="{mid - 6}" class="dsaml-axis" text-anchor="end">positive</text>',
        f'<polyline class="dsaml-trajectory" fill="none" points="{points}"/>',
        f'<circle class="dsaml-now" cx="{cx}" cy="{cy}" r="6"/>',
        "</svg>",
    ])


def _numbers(values: np.ndarray) -> str:
    return " ".join(f"{v:.4f}" for v in values)


def _card(card: Card, duration: float, step_seconds: float) -> str:
    frame = card.frame
    t = frame["time_seconds"].to_numpy(dtype=np.float64)
    arousal = frame["arousal"].to_numpy(dtype=np.float64)
    valence = frame["valence"].to_numpy(dtype=np.float64)
    means = (f"mean arousal <b>{arousal.mean():+.2f}</b>, mean valence <b>{valence.mean():+.2f}</b>"
             if len(t) else "no steps")
    return "".join([
        f'<div class="dsaml-card" data-who="{html.escape(card.who)}" data-arousal="{_numbers(arousal)}" '
        f'data-valence="{_numbers(valence)}">',
        f'<div class="dsaml-card-title">{html.escape(card.title)}</div>',
        f'<div class="dsaml-means">{means}</div>',
        _time_plot(t, {"arousal": arousal, "valence": valence}, duration, step_seconds),
        _plane(valence, arousal),
        "</div>",
    ])


def song_view(song_id: str, title: str, audio_path: str, cards: Sequence[Card], *, step_seconds: float,
              note: str = "") -> str:
    """The player of the song at `audio_path` (served by the page's file route) and the cards side by side."""
    steps = max(len(card.frame) for card in cards) if cards else 0
    duration = max(steps * step_seconds, step_seconds)
    src = "gradio_api/file=" + quote(str(audio_path))
    return "".join([
        f'<div class="dsaml-view" data-song="{html.escape(song_id)}" data-steps="{steps}" '
        f'data-step-seconds="{step_seconds:g}">',
        f'<div class="dsaml-song-title">{html.escape(title)}</div>',
        f'<audio class="dsaml-player" controls preload="auto" src="{src}"></audio>',
        f'<div class="dsaml-note">{html.escape(note)}</div>' if note else "",
        '<div class="dsaml-cards">',
        *(_card(card, duration, step_seconds) for card in cards),
        "</div></div>",
    ])


def empty_view() -> str:
    return '<div class="dsaml-view dsaml-empty">Pick a demo song or upload one to see its curves.</div>'
