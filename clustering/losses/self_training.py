"""LNSCC's self-training clustering loss with the cluster prior term (``papers/lnscc.txt`` Eq. 18)."""

from __future__ import annotations

import torch
from torch import Tensor


def target_distribution(u: Tensor) -> Tensor:
    """DEC's sharpened target ``V_ik = (U_ik^2 / f_k) / sum_j (U_ij^2 / f_j)``, f_k = sum_i U_ik.

    Args:
        u: (N, K) cluster assignment probabilities.

    Returns:
        (N, K) rows summing to 1 (no gradient flows through it).
    """
    u = u.detach().float()
    weight = u.pow(2) / u.sum(dim=0, keepdim=True).clamp_min(1e-12)
    return weight / weight.sum(dim=1, keepdim=True).clamp_min(1e-12)


def self_training_loss(u: Tensor, gamma: float = 1.0, eps: float = 1e-12) -> Tensor:
    """``KL(V || U) + gamma * sum_k Ubar_k log Ubar_k`` over a batch.

    The first term sharpens every row of U towards its target V; the second is the negative
    entropy of the mean assignment ``Ubar_k = mean_i U_ik``, minimised (towards -log K) when the
    batch spreads evenly over the clusters, so it keeps the self-training from collapsing.

    Args:
        u: (N, K) cluster assignment probabilities (softmax rows).
        gamma: weight of the prior term (paper: 1).

    Returns:
        Scalar: KL summed over clusters and averaged over the N rows, plus the prior term.
    """
    if u.dim() != 2 or u.shape[1] < 2:
        raise ValueError(f"u must be (N, K) with K >= 2, got {tuple(u.shape)}")
    u = u.float()
    v = target_distribution(u)
    kl = (v * (torch.log(v.clamp_min(eps)) - torch.log(u.clamp_min(eps)))).sum(dim=1).mean()
    u_bar = u.mean(dim=0)
    prior = (u_bar * torch.log(u_bar.clamp_min(eps))).sum()
    return kl + gamma * prior
