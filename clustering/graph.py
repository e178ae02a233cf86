"""Community graphs of UCCC (paper Sec. 3.2 and supplement A).

Over the 2N augmented views of a batch, the instance head's L2-normalised embeddings z define
cosine similarities s_ij. A positive graph keeps s_ij above a confidence threshold, a negative
graph keeps -s_ij below ``neg_conf``; both are symmetrically normalised and fused over k hops
with the cluster probabilities Y (Eq. 3-5). The graphs are built without gradient: only Y
receives gradient through the fused assignments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: The paper's Table 1: positive confidence per number of clusters (tolerant parameter t = 4).
PAPER_POS_CONF: dict[int, float] = {10: 0.258, 15: 0.484, 20: 0.615, 200: 0.961}
DEFAULT_TOLERANCE = 4.0
#: The threshold with the default t where the formula has none: up to C = t clusters 1 - 2t/C is
#: -1 or below (every pair of views a positive), so 2, 3 and 4 clusters failed with no flags. There
#: it is 0, the formula's value at C = 2t: a positive is any pair closer than orthogonal. Measured
#: against Table 1's 0.258 and 0.5 on two- to five-class sets (README, "UCCC on two to four classes").
FEW_CLUSTERS_POS_CONF = 0.0


def positive_threshold(num_clusters: int, tolerance: float = DEFAULT_TOLERANCE) -> float:
    """cos(theta) = 1 - 2t/C (supplement Eq. 1), or Table 1's value for C in {10, 15, 20, 200}.

    Table 1 was made with t = 4, so it is used only when ``tolerance`` is 4; any other t uses
    the formula (this is what the supplement's t = 2..6 ablation needs). With t = 4 and C <= 4,
    where the formula leaves (-1, 1), FEW_CLUSTERS_POS_CONF; another t there is an error.
    """
    if int(num_clusters) != num_clusters or num_clusters < 2:
        raise ValueError(f"num_clusters must be an integer >= 2, got {num_clusters}")
    if not tolerance > 0:
        raise ValueError(f"tolerance t must be > 0, got {tolerance}")
    if tolerance == DEFAULT_TOLERANCE and int(num_clusters) in PAPER_POS_CONF:
        return PAPER_POS_CONF[int(num_clusters)]
    if tolerance == DEFAULT_TOLERANCE and num_clusters <= DEFAULT_TOLERANCE:
        return FEW_CLUSTERS_POS_CONF
    value = 1.0 - 2.0 * tolerance / num_clusters
    if not -1.0 < value < 1.0:
        raise ValueError(
            f"positive threshold 1 - 2t/C = {value:.3f} for t={tolerance}, C={num_clusters} is not in "
            f"(-1, 1): choose t < C (here t < {num_clusters}) or pass pos_conf explicitly"
        )
    return value


def cosine_similarity_matrix(z: Tensor) -> Tensor:
    """(M, d) -> (M, M) cosine similarities of the rows (normalised inside)."""
    zn = F.normalize(z.float(), dim=1)
    return zn @ zn.T


def positive_adjacency(sim: Tensor, pos_conf: float) -> Tensor:
    """Eq. 3: s_ij where s_ij > pos_conf, else 0 (the diagonal, s_ii = 1, is kept)."""
    return torch.where(sim > pos_conf, sim, torch.zeros_like(sim))


def negative_adjacency(sim: Tensor, neg_conf: float = 0.0) -> Tensor:
    """Eq. 4: -s_ij where s_ij < neg_conf, else 0."""
    return torch.where(sim < neg_conf, -sim, torch.zeros_like(sim))


def symmetric_normalize(adj: Tensor) -> Tensor:
    """D^-1/2 A D^-1/2 with D_ii = sum_j A_ij; rows and columns of zero degree stay zero."""
    degree = adj.sum(dim=1)
    inv_sqrt = torch.where(degree > 0, degree.clamp_min(1e-12).rsqrt(), torch.zeros_like(degree))
    return inv_sqrt[:, None] * adj * inv_sqrt[None, :]


def normalized_graphs(z: Tensor, pos_conf: float, neg_conf: float = 0.0) -> tuple[Tensor, Tensor]:
    """The normalised positive and negative adjacency matrices of the rows of z, without gradient."""
    with torch.no_grad():
        sim = cosine_similarity_matrix(z.detach())
        return (
            symmetric_normalize(positive_adjacency(sim, pos_conf)),
            symmetric_normalize(negative_adjacency(sim, neg_conf)),
        )


def community_assignments(
    z: Tensor, y: Tensor, pos_conf: float, neg_conf: float = 0.0, k: int = 2,
    graphs: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Positive and negative community assignments (Eq. 3-5).

    Args:
        z: (2N, d) instance embeddings (L2-normalised inside; no gradient flows into z).
        y: (2N, C) cluster probabilities.
        pos_conf: positive confidence threshold in (-1, 1).
        neg_conf: negative confidence threshold (paper: 0).
        k: number of hops, >= 1.

    Returns:
        y_pos = A_pos~^k Y and y_neg = A_neg~ A_pos~^(k-1) Y, both (2N, C).
    """
    if k < 1:
        raise ValueError(f"k (hops) must be >= 1, got {k}")
    if z.shape[0] != y.shape[0]:
        raise ValueError(f"z and y must have the same number of rows, got {z.shape[0]} and {y.shape[0]}")
    a_pos, a_neg = graphs if graphs is not None else normalized_graphs(z, pos_conf, neg_conf)
    hop = propagate(a_pos.to(y.dtype), y, k - 1)
    return a_pos.to(y.dtype) @ hop, a_neg.to(y.dtype) @ hop


def propagate(a_pos: Tensor, y: Tensor, hops: int) -> Tensor:
    """A_pos~^hops Y: ``y`` (M, C) carried ``hops`` times over the normalised graph (M, M).

    ``propagate(a_pos, y, k)`` is Eq. 5's Y_pos; the studio calls it on a cached graph.
    """
    out = y
    for _ in range(hops):
        out = a_pos @ out
    return out


def rank_graphs(z: Tensor, pos_fraction: float, neg_fraction: float) -> tuple[Tensor, Tensor]:
    """Normalised positive and negative graphs by rank instead of by absolute similarity.

    j is a positive peer of i when it is among the ``pos_fraction`` most similar rows of i or i is
    among j's (a symmetric kNN graph); a negative peer when it is among the ``neg_fraction`` least
    similar rows of i or the reverse. Edges have weight 1. Unlike the fixed thresholds of Eq. 3-4,
    this gives every row the expected community size whatever the spread of z, which a freshly
    initialised network (every s_ij near 1) does not have.
    """
    with torch.no_grad():
        sim = cosine_similarity_matrix(z.detach())
        m = sim.shape[0]
        k_pos = max(1, min(m, round(pos_fraction * m)))
        k_neg = max(1, min(m - 1, round(neg_fraction * m)))
        top = sim.topk(k_pos, dim=1).indices
        bottom = (-sim).topk(k_neg, dim=1).indices
        pos = torch.zeros_like(sim).scatter_(1, top, 1.0)
        neg = torch.zeros_like(sim).scatter_(1, bottom, 1.0)
        pos = torch.maximum(pos, pos.T).fill_diagonal_(1.0)
        neg = torch.maximum(neg, neg.T) * (1.0 - pos)
        return symmetric_normalize(pos), symmetric_normalize(neg)
