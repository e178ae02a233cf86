"""Confidence-based self-labelling (SCAN's second stage, Van Gansbeke et al. 2020, Sec. 2.3).

A sample whose weakly augmented view the model already assigns with probability above a
threshold becomes a pseudo-label; the strongly augmented view of that sample is trained to the
same cluster with cross-entropy. Each pseudo-label class is weighted by the inverse of its
frequency among the confident samples of the batch, so that large clusters do not absorb the
stage (SCAN's class-balanced cross-entropy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def self_label_loss(weak_probs: Tensor, strong_logits: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Class-balanced cross-entropy of the strong views against the confident weak views' argmax.

    With m_i = [max_k p_ik > threshold], y_i = argmax_k p_ik, n_c = sum_i m_i [y_i = c] and
    w_c = M / (K n_c) (M = sum_i m_i, K the number of classes present among the confident), the
    loss is sum_i m_i w_{y_i} CE(strong_logits_i, y_i) / sum_i m_i w_{y_i}.

    Args:
        weak_probs: (N, C) probabilities of the weak views (no gradient is taken through them).
        strong_logits: (N, C) logits of the strong views of the same samples, row for row.
        threshold: confidence above which a weak view's argmax becomes a pseudo-label, in [0, 1).

    Returns:
        (loss, confident): the scalar loss (0 with a gradient path when no sample is confident)
        and the number of confident samples (a 0-d tensor).
    """
    if weak_probs.shape != strong_logits.shape or weak_probs.dim() != 2:
        raise ValueError(f"weak_probs and strong_logits must both be (N, C); got {tuple(weak_probs.shape)} and "
                         f"{tuple(strong_logits.shape)}")  # fmt: skip
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    confidence, target = weak_probs.detach().float().max(dim=1)
    mask = confidence > threshold
    confident = mask.sum()
    if not bool(confident):
        return strong_logits.float().sum() * 0.0, confident
    target = target[mask]
    counts = torch.bincount(target, minlength=weak_probs.shape[1]).float()
    present = (counts > 0).sum()
    class_weight = torch.where(counts > 0, confident / (present * counts.clamp_min(1.0)), torch.zeros_like(counts))
    weights = class_weight[target]
    losses = F.cross_entropy(strong_logits[mask].float(), target, reduction="none")
    return (weights * losses).sum() / weights.sum(), confident
