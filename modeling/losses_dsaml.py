"""DSAML objectives: the composite CCC/PCC/RMSE loss and the diagonal attention loss.

Reference: `utils/score.py` (per-sequence CCC with population variances, PCC with eps 1e-8, RMSE) and
`utils/train.py::get_loss_with_batch` (loss = 1 - mean(CCC, PCC, 1 - RMSE) over arousal and valence + L_attn).
All statistics are computed per sequence over its real steps only, then averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-8


def agreement(mean_p, mean_t, var_p, var_t, cov, sqrt=torch.sqrt):
    """CCC and Pearson r from population moments: the one definition behind the loss (torch tensors) and the
    evaluation scores (`dsaml.evaluation.scores`, numpy with `sqrt=numpy.sqrt`). Pearson r of a constant curve is 0."""
    ccc = 2 * cov / (var_p + var_t + (mean_p - mean_t) ** 2 + EPS)
    pcc = cov / (sqrt(var_p + EPS**2) * sqrt(var_t + EPS**2) + EPS)
    return ccc, pcc


def sequence_scores(
    predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per-sequence, per-dimension CCC, PCC and RMSE.

    Args:
        predictions, targets: `[B, S, D]`.
        mask: `[B, S]`, 1 on real steps.
    Returns:
        `{"ccc", "pcc", "rmse"}`, each `[B, D]`.
    """
    if mask is None:
        mask = torch.ones(predictions.shape[:2], device=predictions.device)
    weights = mask.to(predictions.dtype).unsqueeze(-1)
    count = weights.sum(dim=1).clamp_min(1.0)
    mean_p = (predictions * weights).sum(1) / count
    mean_t = (targets * weights).sum(1) / count
    dp = (predictions - mean_p[:, None]) * weights
    dt = (targets - mean_t[:, None]) * weights
    var_p = (dp**2).sum(1) / count  # population variances, as in the reference code
    var_t = (dt**2).sum(1) / count
    cov = (dp * dt).sum(1) / count
    ccc, pcc = agreement(mean_p, mean_t, var_p, var_t, cov)
    mse = (((predictions - targets) * weights) ** 2).sum(1) / count
    rmse = torch.sqrt(mse + EPS**2)  # the epsilon keeps the gradient finite at a perfect fit
    return {"ccc": ccc, "pcc": pcc, "rmse": rmse}


def emotion_loss(
    predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None, loss_type: str
) -> torch.Tensor:
    if loss_type == "mse":
        if mask is None:
            return F.mse_loss(predictions, targets)
        weights = mask.to(predictions.dtype).unsqueeze(-1).expand_as(predictions)
        return (((predictions - targets) ** 2) * weights).sum() / weights.sum().clamp_min(1.0)
    scores = sequence_scores(predictions, targets, mask)
    terms = torch.stack([scores["ccc"], scores["pcc"], 1.0 - scores["rmse"]], dim=-1)  # [B, D, 3]
    return 1.0 - terms.mean()


def diagonal_attention_loss(
    local_map: torch.Tensor | None,
    global_map: torch.Tensor | None,
    mask: torch.Tensor | None,
    local_target: float,
    global_target: float,
) -> torch.Tensor:
    """MSE(diag(A_local), local_target) + MSE(diag(A_global), global_target).

    Maps are the LAST local / global layer's post-softmax probabilities `[B, heads, S, S]`, averaged over heads
    and over the batch before taking the diagonal, as in the reference code; padded steps are left out.
    """
    total = None
    for attention, target in ((local_map, local_target), (global_map, global_target)):
        if attention is None:
            continue
        diagonal = attention.mean(dim=1).diagonal(dim1=-2, dim2=-1)  # [B, S]
        if mask is None:
            per_step = diagonal.mean(dim=0)
            term = F.mse_loss(per_step, torch.full_like(per_step, target))
        else:
            weights = mask.to(diagonal.dtype)
            per_step = (diagonal * weights).sum(0) / weights.sum(0).clamp_min(1.0)
            valid = weights.sum(0) > 0
            term = ((per_step - target) ** 2)[valid].mean()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("diagonal_attention_loss needs at least one attention map")
    return total
