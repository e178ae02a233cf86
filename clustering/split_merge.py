"""Split-and-merge moves on a finished run's partition, in the backbone's features.

On data whose classes differ in size, UCCC, SACC and CC end with a few whole classes in two or
three clusters and pairs of small classes sharing one (``digits-longtail``: the 174 zeros in three
clusters, the 135 ones in two, three pairs of small classes merged; README, "Split and merge at the
end"). Lloyd's iterations (:mod:`clustering.head_refit`) cannot undo that: they only move images
across the boundaries the partition already has, and the training losses kept it, since Eq. 6 and
the balance terms all pay for evened cluster sizes.

A move here merges two clusters and splits a third in two, so the number of clusters stays C. It is
scored by the spherical k-means objective over the unit-normalised features x,

    J = sum_k || sum_{i in k} x_i ||   (each image's cosine to its cluster's centroid, summed),

with no term on the cluster sizes: merging a and b costs ``||s_a|| + ||s_b|| - ||s_a + s_b||``
(s_k the sum of a cluster's rows), splitting d gains ``||s_d1|| + ||s_d2|| - ||s_d||`` for its
bisection by 2-means (started along its members' principal direction, as bisecting k-means does).
Each round takes, over the clusters d, the split of d and the cheapest merge of two other clusters
whose net gain is largest among the moves where the split gains more than (1 + margin / sqrt(n_d))
times what the merge costs (n_d: d's images), applies it and runs Lloyd's iterations from the
result; it stops when no move pays. The margin is there because a bisection of a few dozen
images in hundreds of dimensions gains something whatever they hold.

A class split in two costs little to merge (its parts' centroids nearly agree) and two classes in
one cluster gain much from a split, so the moves undo exactly the evened partitions; where the
partition already follows the features' groups no move pays and nothing changes (on balanced sets
of 72+ images a cluster, no move on 30 of 33 runs measured; the three were CIFAR runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from clustering.kmeans import spherical_kmeans

#: A move is applied when its split of a cluster of n images gains more than (1 + MARGIN / sqrt(n))
#: times what its merge costs (1.63 at 10 images, 1.2 at 100, 1.06 at 1,000). Over the suite's
#: checkpoints (README, "Split and merge at the end"), a third of the moves at a ratio under 2 on
#: sets of 10-20 images a cluster lowered ACC (+0.0008 on average); on sets of 70+ images a cluster
#: every such move raised it.
MARGIN = 2.0
#: Lloyd's iterations of the 2-means bisection at most.
BISECT_ITERATIONS = 20


@dataclass(frozen=True)
class Move:
    """One applied move: ``split`` was bisected (its second part took ``merged[1]``'s id) and
    ``merged[1]``'s images joined ``merged[0]``. ``gain`` and ``cost``: the objective's change of
    each half, before the Lloyd iterations that follow."""

    split: int
    merged: tuple[int, int]
    gain: float
    cost: float


def objective(x: Tensor, labels: Tensor, num_clusters: int) -> float:
    """J: the sum over clusters of the norm of their unit-normalised rows' sum."""
    x = F.normalize(x.double(), dim=1)
    return float(_cluster_sums(x, labels.to(x.device).long(), num_clusters).norm(dim=1).sum())


def _cluster_sums(x: Tensor, labels: Tensor, num_clusters: int) -> Tensor:
    return x.new_zeros(num_clusters, x.shape[1]).index_add_(0, labels, x)


def bisect(x: Tensor, iterations: int = BISECT_ITERATIONS) -> Tensor | None:
    """Spherical 2-means of the unit rows ``x`` (n, F), started by the sign of each row's component
    along the principal direction of the rows' residuals from their mean direction. Returns a bool
    mask of the first part, or None when the rows cannot be split (fewer than 2, or all alike)."""
    if x.shape[0] < 2:
        return None
    mean = F.normalize(x.sum(dim=0), dim=0)
    residual = x - (x @ mean)[:, None] * mean[None]
    if float(residual.norm()) == 0.0:
        return None
    direction = torch.linalg.svd(residual, full_matrices=False).Vh[0]
    side = residual @ direction > 0
    for _ in range(iterations):
        if bool(side.all()) or not bool(side.any()):
            return None
        first, second = F.normalize(x[side].sum(dim=0), dim=0), F.normalize(x[~side].sum(dim=0), dim=0)
        nearer_first = x @ first >= x @ second
        if bool((nearer_first == side).all()):
            break
        side = nearer_first
    return None if bool(side.all()) or not bool(side.any()) else side


@torch.no_grad()
def split_merge(features: Tensor, labels: Tensor, num_clusters: int, *, margin: float = MARGIN,
                max_moves: int | None = None) -> tuple[Tensor, list[Move]]:  # fmt: skip
    """Apply merge-and-split moves to ``labels`` while one pays (see the module's docstring).

    Args:
        features: (N, F) the whole data set's features (normalised here).
        labels: (N,) each row's cluster in [0, num_clusters).
        num_clusters: C, at least 3 (a move needs a cluster to split and two others to merge).
        margin: a move splitting a cluster of n images is applied when its gain exceeds
            (1 + margin / sqrt(n)) times its merge's cost (0: whenever the objective rises).
        max_moves: rounds at most (default: C).

    Returns:
        The new labels (N,) (``labels`` itself, unchanged, when no move pays; after a move, the
        Lloyd-converged partition) and the moves applied, in order.
    """
    if num_clusters < 3:
        raise ValueError(f"split and merge needs at least 3 clusters, got {num_clusters}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0 (a move must not lower the objective), got {margin}")
    x = F.normalize(features.double(), dim=1)
    current = labels.to(x.device).long()
    value = objective(x, current, num_clusters)
    moves: list[Move] = []
    for _ in range(num_clusters if max_moves is None else max_moves):
        move = _best_move(x, current, num_clusters, margin)
        if move is None:
            break
        (a, b), d, side = move[0].merged, move[0].split, move[1]
        proposed = current.clone()
        proposed[current == b] = a
        members = torch.nonzero(current == d).flatten()
        proposed[members[~side]] = b
        _, proposed, _ = spherical_kmeans(x, proposed, num_clusters)
        proposed_value = objective(x, proposed, num_clusters)
        if proposed_value <= value:
            break  # cannot happen in exact arithmetic (both steps raise J); guards against a cycle
        current, value = proposed, proposed_value
        moves.append(move[0])
    return current, moves


def _best_move(x: Tensor, labels: Tensor, num_clusters: int, margin: float) -> tuple[Move, Tensor] | None:
    """The split with the largest net gain over the cheapest merge of two other clusters, among those
    gaining more than (1 + margin / sqrt(n)) times the merge's cost, with the split's mask over its
    members; None when there is no such move."""
    sums = _cluster_sums(x, labels, num_clusters)
    norms = sums.norm(dim=1)
    squared = norms[:, None] ** 2 + norms[None, :] ** 2 + 2 * sums @ sums.T  # ||s_a + s_b||^2
    cost = norms[:, None] + norms[None, :] - squared.clamp_min(0).sqrt()
    cost.fill_diagonal_(float("inf"))
    upper = torch.triu(torch.ones_like(cost, dtype=torch.bool), diagonal=1)
    order = cost[upper].argsort()
    rows, cols = torch.nonzero(upper, as_tuple=True)
    pairs = list(zip(rows[order].tolist(), cols[order].tolist(), strict=True))  # every merge, cheapest first
    best: tuple[float, Move, Tensor] | None = None
    for d in range(num_clusters):
        members = torch.nonzero(labels == d).flatten()
        side = bisect(x[members])
        if side is None:
            continue
        gain = float(x[members[side]].sum(dim=0).norm() + x[members[~side]].sum(dim=0).norm() - norms[d])
        pair = next((a, b) for a, b in pairs if d not in (a, b))  # C >= 3: one exists
        merge_cost = float(cost[pair])
        net = gain - merge_cost
        pays = gain > (1.0 + margin / math.sqrt(len(members))) * merge_cost and net > 0
        if pays and (best is None or net > best[0]):
            best = (net, Move(split=d, merged=pair, gain=gain, cost=merge_cost), side)
    return None if best is None else (best[1], best[2])
