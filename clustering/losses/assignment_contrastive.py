"""GCC's assignment graph contrastive loss, AGC (``papers/gcc.txt`` Eq. 9)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def assignment_contrastive_loss(p: Tensor, p_neighbor: Tensor, temperature: float = 1.0,
                                cosine: bool = False) -> Tensor:  # fmt: skip
    """Contrast cluster k's column in one view with cluster k's column in the neighbours' view.

    With ``q_k`` the k-th column of ``p`` (which samples go to cluster k) and ``q~_k`` the k-th
    column of ``p_neighbor`` (row i: a view of a random graph neighbour of sample i):

        L = -1/K sum_k log( exp(q_k . q~_k / tau) / sum_j exp(q_k . q~_j / tau) )

    The paper's dot product is on raw probability columns (``cosine=False``); ``cosine=True``
    L2-normalises the columns first, as CC does. Only the columns of ``p`` act as anchors.

    Args:
        p: (N, K) probabilities of a view of the batch.
        p_neighbor: (N, K) probabilities of a view of each sample's random neighbour.
        temperature: tau > 0 (paper: 1.0).
        cosine: normalise the columns (not in the paper).

    Returns:
        Scalar loss.
    """
    if p.shape != p_neighbor.shape or p.dim() != 2:
        raise ValueError(f"p and p_neighbor must both be (N, K); got {tuple(p.shape)}, {tuple(p_neighbor.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    q, q_nb = p.float().T, p_neighbor.float().T  # (K, N): one row per cluster
    if cosine:
        q, q_nb = F.normalize(q, dim=1), F.normalize(q_nb, dim=1)
    logits = q @ q_nb.T / temperature  # (K, K)
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))
