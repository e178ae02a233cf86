"""CC's cluster-level contrastive loss (``papers/cc.txt`` Eq. 4-6)."""

from __future__ import annotations

from torch import Tensor

from clustering.losses.balance import balance_loss
from clustering.losses.nt_xent import nt_xent


def cc_cluster_loss(p_a: Tensor, p_b: Tensor, temperature: float = 1.0, entropy: bool = True) -> Tensor:
    """Contrast the clusters (columns) of two views' probability matrices, plus the balance term.

    Column k of ``p_a`` (the batch's distribution over cluster k under view a) is pulled towards
    column k of ``p_b`` and pushed from the other 2C - 2 columns: NT-Xent over the 2C
    L2-normalised columns with cosine similarity (Eq. 4-5; the anchor itself is left out of its
    denominator, the positive stays in, as in CC's code), averaged over the 2C anchors (Eq. 6).
    With ``entropy`` the term ``log C - H(p_view)`` is added for each view, where ``p_view`` is
    the column sums normalised; it is what keeps CC from putting every sample in one cluster.
    (The paper writes ``- H(Y)`` with H(Y) = sum p log p; ``log C`` is a constant shift.)

    Args:
        p_a: (N, C) softmax probabilities of view a.
        p_b: (N, C) softmax probabilities of view b, row i the same sample as row i of ``p_a``.
        temperature: tau_C > 0 (paper: 1.0).
        entropy: add the balance term of both views.

    Returns:
        Scalar loss.
    """
    if p_a.shape != p_b.shape or p_a.dim() != 2:
        raise ValueError(f"p_a and p_b must both be (N, C); got {tuple(p_a.shape)} and {tuple(p_b.shape)}")
    if p_a.shape[1] < 2:
        raise ValueError(f"need at least 2 clusters, got {p_a.shape[1]}")
    loss = nt_xent(p_a.T, p_b.T, temperature)  # rows of p.T are the cluster representations
    if entropy:
        loss = loss + balance_loss(p_a) + balance_loss(p_b)
    return loss
