"""The do-no-harm rule of personalization: how far to move from the base model toward the adapted weights.

One annotated song is little evidence, and the inner loop can fit what does not carry over to the listener's
other songs. With `config.adaptation_holdout = h > 0` the rule holds out the last share `h` of each support
song, runs the inner loop on the rest, and scores blends of the base and the adapted model on the held-out end
(squared error) for each share alpha of `SHRINKAGE_GRID`; the best alpha is then applied to the inner loop run
on the whole song. alpha = 0 keeps the base model, alpha = 1 is the inner loop as meta-trained.

When the inner loop adapts only the predictor's linear read-out (`predictor.dense`, `predictor.out`: two
affine maps with dropout between them, affine as a whole at inference), arousal and valence get an alpha EACH:
the blend `base + alpha_d * (adapted - base)` of the two output curves is itself that read-out with other
weights, which `fold_per_dimension` finds exactly (a rank-2 change of `predictor.dense`, so a LoRA adapter
stores it exactly too). The listener whose valence the inner loop gets wrong keeps their arousal gain. Any
other adapted set gets one alpha for all weights, `base + alpha * (adapted - base)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from dsaml.adaptation.tensors import DELAY, named_tensors
from dsaml.data.alignment import AlignedSong
from dsaml.inference.songs import predict_songs

__all__ = ["MIN_HELD_OUT_STEPS", "SHRINKAGE_GRID", "blend", "choose_shrinkage", "fold_per_dimension",
           "predictions_with", "reads_out_linearly", "shrink", "split_in_time"]

SHRINKAGE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_HELD_OUT_STEPS = 4  # 2 s: fewer held-out steps say nothing about a blend
READ_OUT = ("predictor.dense.weight", "predictor.dense.bias", "predictor.out.weight", "predictor.out.bias")

Shrinkage = tuple[float, float]  # (arousal, valence); equal for a single alpha


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


def reads_out_linearly(model, names) -> bool:
    """True when the adapted tensors are (some of) the predictor's two linear layers and nothing else (but the
    output delay, which moves the curve the read-out gives)."""
    names = set(names) - {DELAY}
    return bool(names) and names <= set(READ_OUT) and hasattr(getattr(model, "predictor", None), "dense")


@torch.no_grad()
def fold_per_dimension(base: Mapping[str, torch.Tensor], fast: Mapping[str, torch.Tensor],
                       alpha: Shrinkage) -> dict[str, torch.Tensor]:
    """Read-out weights whose output is `base_d + alpha_d * (adapted_d - base_d)` for each dimension d.

    The read-out is affine, y = W2 (W1 h + b1) + V q + b2 = M h + V q + c (q: the read-out cues, if any). The
    blend's M'' = M + diag(alpha) (M' - M) (and c'' likewise) is reached by changing W1 and b1 only:
    W1'' = W1 + W2^+ diag(alpha) (M' - M), exact because W2 W2^+ = I for the 2-row output layer (full row
    rank); V's rows are blended directly. Without `predictor.dense` among the adapted tensors the output
    layer's rows are blended directly."""
    get = (lambda params, key: params.get(key, base.get(key)).double())
    w2, b2 = get(base, READ_OUT[2]), get(base, READ_OUT[3])
    a = torch.tensor(alpha, dtype=torch.float64, device=w2.device)
    if READ_OUT[0] not in fast:  # only the output layer adapted: blend its rows
        out = {}
        for key in (READ_OUT[2], READ_OUT[3]):
            if key in fast:
                shape = (-1, 1) if key.endswith("weight") else (-1,)
                out[key] = (base[key].double() + a.view(shape) * (fast[key].double() - base[key].double())).float()
        return out
    w1, b1 = get(base, READ_OUT[0]), get(base, READ_OUT[1])
    w1f, b1f, w2f, b2f = (get(fast, k) if k in fast else get(base, k) for k in READ_OUT)
    hidden = w1.shape[0]  # the output layer's further inputs are the read-out cues (`DSAMLConfig.readout_cues`)
    w2a, w2b, w2fa, w2fb = w2[:, :hidden], w2[:, hidden:], w2f[:, :hidden], w2f[:, hidden:]
    m, c = w2a @ w1, w2a @ b1 + b2
    mf, cf = w2fa @ w1f, w2fa @ b1f + b2f
    pinv = torch.linalg.pinv(w2a)
    out = {READ_OUT[0]: (w1 + pinv @ (a[:, None] * (mf - m))).float(),
           READ_OUT[1]: (b1 + pinv @ (a * (cf - c))).float()}
    if READ_OUT[2] in fast:  # hidden part: the base's; cue weights: blended row by row
        out[READ_OUT[2]] = torch.cat([w2a, w2b + a[:, None] * (w2fb - w2b)], dim=1).float()
    if READ_OUT[3] in fast:
        out[READ_OUT[3]] = base[READ_OUT[3]].detach().clone()
    return out


@torch.no_grad()
def predictions_with(model, params: Mapping[str, torch.Tensor], songs: Sequence[AlignedSong]) -> list[np.ndarray]:
    """Whole-song predictions (sliding windows, as evaluation predicts) with `params` in place."""
    config = model.config
    named = named_tensors(model)
    saved = {n: named[n].detach().clone() for n in params}
    was_training = model.training
    try:
        for name, value in params.items():
            named[name].copy_(value)
        preds = predict_songs(model, songs, config.window_steps, config.hop_steps)
        return [p.astype(np.float64) for p in preds]
    finally:
        for name, value in saved.items():
            named[name].copy_(value)
        model.train(was_training)


def choose_shrinkage(model, songs: Sequence[AlignedSong], holdout: float,
                     adapt_on: Callable[[Sequence[AlignedSong]], dict[str, torch.Tensor]]) -> tuple[Shrinkage, dict]:
    """(arousal, valence) shares of `SHRINKAGE_GRID` whose blend best predicts the held-out ends of `songs`,
    and the held-out errors. `adapt_on(songs)` runs the inner loop and returns the fast weights. A song too short
    to split keeps the inner loop as meta-trained, (1, 1)."""
    splits = [split_in_time(song, holdout) for song in songs]
    if any(s is None for s in splits):
        return (1.0, 1.0), {"shrinkage_note": f"support shorter than {MIN_HELD_OUT_STEPS / holdout:.0f} steps: "
                                              "not split"}
    beginnings, ends = [s[0] for s in splits], [s[1] for s in splits]
    fast = adapt_on(beginnings)
    base = {n: p.detach() for n, p in model.named_parameters() if n in fast}
    labels = np.concatenate([e.labels.double().numpy() for e in ends])
    per_dimension = reads_out_linearly(model, fast)
    if per_dimension:  # the blend of the curves is the curve of the folded weights: two forwards suffice
        before = np.concatenate(predictions_with(model, base, ends))
        after = np.concatenate(predictions_with(model, fast, ends))
        mse = {a: (((before + a * (after - before)) - labels) ** 2).mean(axis=0) for a in SHRINKAGE_GRID}
    else:
        mse = {a: np.full(2, ((np.concatenate(predictions_with(model, blend(base, fast, a), ends)) - labels) ** 2)
                          .mean()) for a in SHRINKAGE_GRID}
    # ties go to the larger share (the meta-learned step)
    chosen = tuple(float(max(SHRINKAGE_GRID, key=lambda a: (-mse[a][d], a))) for d in range(2))
    info = {"held_out_steps": int(labels.shape[0]), "shrinkage_per_dimension": per_dimension,
            "held_out_mse": {f"{a:g}": [float(x) for x in e] for a, e in mse.items()}}
    return chosen, info


def shrink(model, fast: Mapping[str, torch.Tensor], alpha: Shrinkage) -> dict[str, torch.Tensor]:
    """The fast weights moved the chosen share(s) of the way from the base (`choose_shrinkage`'s result). The
    reaction lag chosen with them (`predictor.delay.steps`) is kept whole, except for a dimension with share 0,
    which stays the base model's curve."""
    if alpha == (1.0, 1.0):
        return dict(fast)
    weights = {n: v for n, v in fast.items() if n != DELAY}
    base = {n: p.detach() for n, p in model.named_parameters() if n in weights}
    if reads_out_linearly(model, fast):
        out = fold_per_dimension(base, weights, alpha)
    elif alpha[0] != alpha[1]:
        raise ValueError(f"shares {alpha[0]:g} / {alpha[1]:g} for arousal / valence need an inner loop that adapts "
                         f"only the predictor's linear read-out, not {sorted(weights)}: use one share for both")
    else:
        out = blend(base, weights, alpha[0])
    if DELAY in fast:
        kept = torch.tensor(alpha, device=fast[DELAY].device) > 0
        out[DELAY] = torch.where(kept, fast[DELAY], torch.zeros_like(fast[DELAY]))
    return out
