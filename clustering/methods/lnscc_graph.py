"""LNSCC's locally normalised kNN graph and its quantity-augmented pair sets (``papers/lnscc.txt``
Sec. 3.1-3.2, Eq. 1, 2, 6, 11, 14, 16).

Everything is sparse: the kNN search is scikit-learn's ``NearestNeighbors`` and the adjacency a
SciPy sparse matrix with at most 2 N M entries, so no N x N matrix is ever formed. A pair set
(a multiset of sample pairs) is stored as the graph's undirected edges with a copy count per
edge; drawing uniformly from the multiset is drawing an edge with probability proportional to
its count.

Where the paper is ambiguous:
- The statistics A_max, A_mean and (1 - A)_max are taken over the graph's edges (the non-zero
  entries of A). Over the full N x N matrix A_mean would be about 1.5 / N and every edge would be
  "above average", contradicting Eq. 11's stated purpose; (1 - A)_max is 1 - A_min either way
  up to the weakest edge.
- Counts use floor(x + 1e-6), so that an edge exactly at the mean gets its one copy despite
  rounding, and are capped at ``max_copies`` because Eq. 6 divides by 1 - A_ij and by A_ij,
  which reach 0 when a softmax row saturates (one neighbour much nearer than the others).
- Pairs are undirected edges (i < j); the losses are symmetric in i, j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

COUNT_EPS = 1e-6
SETS = ("im_pos", "im_neg", "ba", "dis")  # E^{im+}, E^{im-}, E^{ba}, E^{dis}
ATTRACT = {"im_pos": True, "im_neg": False, "ba": True, "dis": False}  # -log O vs -log(1 - O)


def knn(x: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, M) indices and Euclidean distances of every row's M nearest other rows."""
    from sklearn.neighbors import NearestNeighbors

    n = x.shape[0]
    if not 1 <= m < n:
        raise ValueError(f"need 1 <= M < N neighbours, got M={m}, N={n}")
    dist, idx = NearestNeighbors(n_neighbors=m + 1).fit(x).kneighbors(x)
    # Drop each row's own entry; with duplicates the row itself may not come first, so remove it
    # by identity, and where it is missing (M+1 exact duplicates) drop the farthest instead.
    is_self = idx == np.arange(n)[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), m)
    keep = np.ones_like(is_self)
    keep[np.arange(n), drop] = False
    return idx[keep].reshape(n, m), dist[keep].reshape(n, m)


def graph_temperature(dist: np.ndarray, tau: float) -> float:
    """The T of softmax(-D / T): 1 (the paper: the raw distances) when ``tau`` is 0, else ``tau``
    times the mean gap between each row's nearest and M-th nearest neighbour.

    On pixels in [0, 1] the paper's softmax(-D) is nearly flat (MNIST-test: that gap is about 1.1,
    so the 1st and 10th neighbour get weights within a factor 3), and its shape changes with the
    units of the data; measured in the data's own gap, T is the same for pixels, rescaled
    pixels and any feature matrix."""
    if tau < 0:
        raise ValueError(f"graph tau must be >= 0, got {tau}")
    if tau == 0:
        return 1.0
    gap = float(np.mean(dist[:, -1] - dist[:, 0]))
    return tau * gap if gap > 0 else 1.0


def local_weights(dist: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Eq. 1: W_i. = softmax(-D_i. / T) row by row (computed stably); T = 1 is the paper."""
    shifted = -(dist - dist.min(axis=1, keepdims=True)) / temperature
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def adjacency(idx: np.ndarray, weights: np.ndarray) -> sp.csr_matrix:
    """Eq. 2: A = W^ + W^T - W^ * W^T (elementwise product), a symmetric sparse N x N matrix."""
    n, m = idx.shape
    w_hat = sp.csr_matrix((weights.ravel().astype(np.float64), (np.repeat(np.arange(n), m), idx.ravel())),
                          shape=(n, n))  # fmt: skip
    w_hat.sum_duplicates()
    a = w_hat + w_hat.T - w_hat.multiply(w_hat.T)
    a = sp.csr_matrix(a)
    a.eliminate_zeros()
    return a


@dataclass
class PairSets:
    """The graph's undirected edges with their copy counts in each pair set.

    edges: (E, 2) int64 pairs i < j. a: (E,) edge weights A_ij.
    im_pos, im_neg, ba: (E,) copies of each edge in E^{im+} (Eq. 6), E^{im-} (Eq. 6), E^{ba} (Eq. 11).
    dis_size: |E^{dis}| = beta * |E^{im+}| (Eq. 16); its pairs are drawn among non-edges (Eq. 14).
    """

    edges: np.ndarray
    a: np.ndarray
    im_pos: np.ndarray
    im_neg: np.ndarray
    ba: np.ndarray
    dis_size: int

    def sizes(self) -> dict[str, int]:
        return {"im_pos": int(self.im_pos.sum()), "im_neg": int(self.im_neg.sum()), "ba": int(self.ba.sum()),
                "dis": int(self.dis_size)}  # fmt: skip


def _count(x: np.ndarray, max_copies: int) -> np.ndarray:
    return np.minimum(np.floor(np.nan_to_num(x, posinf=max_copies) + COUNT_EPS), max_copies).astype(np.int64)


def pair_sets(a: sp.csr_matrix, alpha: float = 2.0, beta: float = 5.0, max_copies: int = 1000) -> PairSets:
    """The quantity-augmentation counts of Eq. 6, 11 and the size of Eq. 16 from the adjacency."""
    upper = sp.triu(a, k=1).tocoo()
    edges = np.stack([upper.row, upper.col], axis=1).astype(np.int64)
    w = upper.data.astype(np.float64)
    if w.size == 0:
        raise ValueError("the kNN graph has no edges")
    a_max, a_mean, one_minus_a_max = w.max(), w.mean(), (1.0 - w).max()
    with np.errstate(divide="ignore"):
        im_pos = _count(alpha * a_max / (1.0 - w), max_copies)  # s- = 1 - A
        im_neg = _count(one_minus_a_max / w, max_copies)  # s+ = A
    ba = _count(w / a_mean, max_copies)  # s+ = A
    return PairSets(edges=edges, a=w, im_pos=im_pos, im_neg=im_neg, ba=ba, dis_size=int(round(beta * im_pos.sum())))


def knn_pair_sets(idx: np.ndarray, dist: np.ndarray, alpha: float = 2.0, beta: float = 5.0,
                  max_copies: int = 1000, tau: float = 0.0) -> PairSets:  # fmt: skip
    """The pair sets of a kNN table ((N, M) indices and distances): Eq. 1, 2, then 6, 11, 16;
    ``tau``: see :func:`graph_temperature` (0 = the paper)."""
    return pair_sets(adjacency(idx, local_weights(dist, graph_temperature(dist, tau))), alpha, beta, max_copies)


def draw_edges(counts: Tensor, num: int, generator: torch.Generator | None) -> Tensor:
    """``num`` edge positions drawn with replacement, edge e with probability counts[e] / sum."""
    cum = counts.cumsum(0)
    u = torch.randint(int(cum[-1]), (num,), generator=generator, device=counts.device)
    return torch.searchsorted(cum, u, right=True)


def draw_non_edges(neighbors: Tensor, num: int, generator: torch.Generator | None, rounds: int = 10) -> Tensor:
    """(<= num, 2) uniformly random pairs i != j that are not kNN-linked in either direction
    (B_ij = 1, Eq. 14); pairs still linked after ``rounds`` redraws are dropped."""
    n = neighbors.shape[0]
    device = neighbors.device
    i = torch.randint(n, (num,), generator=generator, device=device)
    j = torch.randint(n - 1, (num,), generator=generator, device=device)
    j = j + (j >= i).long()
    for _ in range(rounds):
        linked = (neighbors[i] == j[:, None]).any(dim=1) | (neighbors[j] == i[:, None]).any(dim=1)
        if not linked.any():
            break
        k = int(linked.sum())
        i2 = torch.randint(n, (k,), generator=generator, device=device)
        j2 = torch.randint(n - 1, (k,), generator=generator, device=device)
        i[linked], j[linked] = i2, j2 + (j2 >= i2).long()
    linked = (neighbors[i] == j[:, None]).any(dim=1) | (neighbors[j] == i[:, None]).any(dim=1)
    return torch.stack([i, j], dim=1)[~linked]


SAMPLINGS = ("sets", "weighted")


class PairSampler:
    """Pairs for one step, on the kNN table's device.

    ``sampling="sets"`` (the paper): uniformly from the union of the four pair sets, so each set
    contributes in proportion to its size (what beta balances), E^{im-} scaled by
    ``im_neg_scale``; E^{ba}, E^{im+/-} edges in proportion to their copy counts, E^{dis} pairs
    afresh among the non-edges.

    ``sampling="weighted"`` (another reading of "the mean value in A" as the mean over the whole
    N x N matrix, under which every edge is above average and the copies of Eq. 6 and 11 are
    proportional to A_ij): attracting pairs are edges drawn with probability proportional to
    A_ij, and each comes with ``negatives`` repelling non-edges drawn uniformly; E^{im-} is not
    drawn. Attracting pairs are reported as ``im_pos``, repelling ones as ``dis``.
    """

    def __init__(self, sets: PairSets, neighbors: Tensor, im_neg_scale: float = 1.0, sampling: str = "sets",
                 negatives: int = 5) -> None:  # fmt: skip
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown pair sampling {sampling!r}; valid: {', '.join(SAMPLINGS)}")
        device = neighbors.device
        self.neighbors = neighbors
        self.edges = torch.from_numpy(sets.edges).to(device)
        self.counts = {name: torch.from_numpy(getattr(sets, name)).to(device) for name in SETS[:3]}
        if sampling == "weighted":
            # Probability proportional to A_ij: integer weights at a resolution of 1e-6 of the largest.
            self.counts["im_pos"] = torch.from_numpy(np.ceil(sets.a / sets.a.max() * 1e6).astype(np.int64)).to(device)
            shares = {"im_pos": 1.0, "dis": float(negatives)}
            self.weights = torch.tensor([shares.get(s, 0.0) for s in SETS], device=device)
        else:
            sizes = sets.sizes()
            scale = {"im_neg": im_neg_scale}
            self.weights = torch.tensor([float(sizes[s]) * scale.get(s, 1.0) for s in SETS], device=device)
        #: (4,) bool: whether a pair from ``SETS[k]`` attracts.
        self.attract = torch.tensor([ATTRACT[s] for s in SETS], device=device)

    def draw(self, num: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """(P, 2) pairs (P <= num: non-edge draws that stay linked are dropped) and (P,) indices
        into ``SETS`` of the set each came from."""
        which = torch.multinomial(self.weights, num, replacement=True, generator=generator)
        chunks, labels = [], []
        for k, name in enumerate(SETS):
            count = int((which == k).sum())
            if count == 0:
                continue
            if name == "dis":
                chosen = draw_non_edges(self.neighbors, count, generator)
            else:
                chosen = self.edges[draw_edges(self.counts[name], count, generator)]
            chunks.append(chosen)
            labels.append(torch.full((chosen.shape[0],), k, device=self.neighbors.device))
        return torch.cat(chunks), torch.cat(labels)
