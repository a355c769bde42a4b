"""How far personalization moves from the base model toward the adapted weights: the recipe's share, applied.

The share (`PersonalizationConfig.share`, chosen on validation listeners by `dsaml.training.calibration`) blends
the base and the adapted model, `base + alpha * (adapted - base)`; alpha = 0 keeps the base model, alpha = 1 is the
inner loop as meta-trained.

When the inner loop adapts only the predictor's linear read-out (`predictor.dense`, `predictor.out`: two affine
maps with dropout between them, affine as a whole at inference), arousal and valence get an alpha EACH: the
blend of the two output curves is itself that read-out with other weights, which `fold_per_dimension` finds
exactly (a rank-2 change of `predictor.dense`, so a LoRA adapter stores it exactly too). Any other adapted set
gets one alpha for all weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from dsaml.adaptation.config import READ_OUT_TENSORS
from dsaml.adaptation.tensors import DELAY, named_tensors
from dsaml.data.alignment import AlignedSong
from dsaml.inference.songs import predict_songs

__all__ = ["blend", "fold_per_dimension", "predictions_with", "reads_out_linearly", "shrink"]


Shrinkage = tuple[float, float]  # (arousal, valence); equal for a single alpha


def blend(base: Mapping[str, torch.Tensor], fast: Mapping[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """`base + alpha * (fast - base)` for every adapted tensor."""
    return {name: (base[name] + alpha * (value - base[name])).detach() for name, value in fast.items()}


def reads_out_linearly(model, names) -> bool:
    """True when the adapted tensors are (some of) the predictor's two linear layers and nothing else (but the
    output delay, which moves the curve the read-out gives)."""
    names = set(names) - {DELAY}
    return bool(names) and names <= set(READ_OUT_TENSORS) and hasattr(getattr(model, "predictor", None), "dense")


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
    w2, b2 = get(base, READ_OUT_TENSORS[2]), get(base, READ_OUT_TENSORS[3])
    a = torch.tensor(alpha, dtype=torch.float64, device=w2.device)
    if READ_OUT_TENSORS[0] not in fast:  # only the output layer adapted: blend its rows
        out = {}
        for key in (READ_OUT_TENSORS[2], READ_OUT_TENSORS[3]):
            if key in fast:
                shape = (-1, 1) if key.endswith("weight") else (-1,)
                out[key] = (base[key].double() + a.view(shape) * (fast[key].double() - base[key].double())).float()
        return out
    w1, b1 = get(base, READ_OUT_TENSORS[0]), get(base, READ_OUT_TENSORS[1])
    w1f, b1f, w2f, b2f = (get(fast, k) if k in fast else get(base, k) for k in READ_OUT_TENSORS)
    hidden = w1.shape[0]  # the output layer's further inputs are the read-out cues (`DSAMLConfig.readout_cues`)
    w2a, w2b, w2fa, w2fb = w2[:, :hidden], w2[:, hidden:], w2f[:, :hidden], w2f[:, hidden:]
    m, c = w2a @ w1, w2a @ b1 + b2
    mf, cf = w2fa @ w1f, w2fa @ b1f + b2f
    pinv = torch.linalg.pinv(w2a)
    out = {READ_OUT_TENSORS[0]: (w1 + pinv @ (a[:, None] * (mf - m))).float(),
           READ_OUT_TENSORS[1]: (b1 + pinv @ (a * (cf - c))).float()}
    if READ_OUT_TENSORS[2] in fast:  # hidden part: the base's; cue weights: blended row by row
        out[READ_OUT_TENSORS[2]] = torch.cat([w2a, w2b + a[:, None] * (w2fb - w2b)], dim=1).float()
    if READ_OUT_TENSORS[3] in fast:
        out[READ_OUT_TENSORS[3]] = base[READ_OUT_TENSORS[3]].detach().clone()
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




def shrink(model, fast: Mapping[str, torch.Tensor], alpha: Shrinkage) -> dict[str, torch.Tensor]:
    """The fast weights moved the share(s) `alpha` of the way from the base. The
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
