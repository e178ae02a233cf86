"""Cluster-balance regulariser: log C - H(p), with p the batch's cluster-size distribution.

CC adds it per view (Eq. 6, the ``- H(Y)`` term), SACC per view of every cluster pair, and GCC
calls it the cluster regularisation loss (Eq. 10).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def balance_loss(probs: Tensor, eps: float = 1e-12) -> Tensor:
    """``log C - H(p)`` with ``p_k = sum_i probs[i, k] / sum_{i,k} probs[i, k]``.

    Args:
        probs: (N, C) soft cluster assignments (softmax rows; any non-negative matrix works).
        eps: floor inside the log so that empty clusters give 0 * log(eps) = 0, not NaN.

    Returns:
        Scalar in [0, log C]: 0 when the batch is spread evenly over the C clusters, log C when
        every sample sits in one cluster.
    """
    if probs.dim() != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must be (N, C) with C >= 2, got {tuple(probs.shape)}")
    col = probs.float().sum(dim=0)
    p = col / col.sum()
    entropy = -(p * torch.log(p.clamp_min(eps))).sum()
    return math.log(probs.shape[1]) - entropy
