"""The do-no-harm rule of personalization: how far to move from the base model toward the adapted weights.

One annotated song is little evidence, and the inner loop can fit what does not carry over to the listener's
other songs. With `config.adaptation_holdout = h > 0` the rule holds out the last share `h` of each support
song, runs the inner loop on the rest, and scores the blends `base + alpha * (adapted - base)` for alpha in
`SHRINKAGE_GRID` on the held-out end (squared error); the alpha that predicts it best is then applied to the
inner loop run on the whole song. alpha = 0 keeps the base model (the listener gets no worse than it on their
own song's end); the blend of every adapted tensor is exact in a LoRA adapter (its delta is scaled by alpha).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from dsaml.alignment import AlignedSong
from dsaml.batches import collate

__all__ = ["MIN_HELD_OUT_STEPS", "SHRINKAGE_GRID", "blend", "choose_shrinkage", "split_in_time"]

SHRINKAGE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_HELD_OUT_STEPS = 4  # 2 s: fewer held-out steps say nothing about a blend


def split_in_time(song: AlignedSong, holdout: float) -> tuple[AlignedSong, AlignedSong] | None:
    """(beginning, held-out end) of a song, or None when the end would be shorter than `MIN_HELD_OUT_STEPS`."""
    n = song.num_steps
    k = n - int(round(n * holdout))
    if n - k < MIN_HELD_OUT_STEPS or k < 1:
        return None

    def part(a: int, b: int) -> AlignedSong:
        cut = (lambda t: None if t is None else t[a:b])
        return AlignedSong(song.song_id, song.annotator, song.features[a:b], song.labels[a:b], song.start_step + a,
                           cut(song.waveform), cut(song.harmonic))

    return part(0, k), part(k, n)


def blend(base: Mapping[str, torch.Tensor], fast: Mapping[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """`base + alpha * (fast - base)` for every adapted tensor."""
    return {name: (base[name] + alpha * (value - base[name])).detach() for name, value in fast.items()}


@torch.no_grad()
def _squared_error(model, params: Mapping[str, torch.Tensor], songs: Sequence[AlignedSong]) -> float:
    """Squared error of whole-song predictions (sliding windows, as evaluation predicts) with `params`."""
    config = model.config
    saved = {n: p.detach().clone() for n, p in model.named_parameters() if n in params}
    named = dict(model.named_parameters())
    was_training = model.training
    model.eval()
    try:
        for name, value in params.items():
            named[name].copy_(value)
        total = 0.0
        for song in songs:
            batch = collate([song])
            pred = model.predict_long(batch["input_features"], global_input_values=batch.get("global_input_values"),
                                      harmonic_features=batch.get("harmonic_features"),
                                      window_steps=config.window_steps, hop_steps=config.inference_hop_steps)[0]
            total += float(((pred.float().cpu() - song.labels.float()) ** 2).sum())
        return total
    finally:
        for name, value in saved.items():
            named[name].copy_(value)
        model.train(was_training)


def choose_shrinkage(model, songs: Sequence[AlignedSong], holdout: float,
                     adapt_on: Callable[[Sequence[AlignedSong]], dict[str, torch.Tensor]]) -> tuple[float, dict]:
    """The alpha of `SHRINKAGE_GRID` whose blend best predicts the held-out ends of `songs`, and the errors.

    `adapt_on(songs)` runs the inner loop and returns the fast weights. With a song too short to split, alpha is
    1 (the inner loop as meta-trained)."""
    splits = [split_in_time(song, holdout) for song in songs]
    if any(s is None for s in splits):
        return 1.0, {"shrinkage_note": f"support shorter than {MIN_HELD_OUT_STEPS / holdout:.0f} steps: not split"}
    beginnings, ends = [s[0] for s in splits], [s[1] for s in splits]
    fast = adapt_on(beginnings)
    base = {n: p.detach() for n, p in model.named_parameters() if n in fast}
    errors = {alpha: _squared_error(model, blend(base, fast, alpha), ends) for alpha in SHRINKAGE_GRID}
    steps = sum(e.num_steps for e in ends)
    best = min(SHRINKAGE_GRID, key=lambda a: (errors[a], -a))  # ties: the larger step (the meta-learned one)
    return best, {"held_out_steps": steps,
                  "held_out_mse": {f"{a:g}": float(np.float64(e) / (2 * steps)) for a, e in errors.items()}}
