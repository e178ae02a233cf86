"""The head's partition against fresh spherical k-means runs, chosen by the k-means objective.

CC, SACC and GCC train their cluster head under a uniform prior on cluster sizes (CC's
``log C - H(p)`` in every cluster loss, GCC's L_CR). Where the classes differ in size the head
ends evened: a large class in two clusters, two small ones sharing one. Its backbone features keep
more of the data's own grouping, but the Lloyd iterations of :mod:`clustering.head_refit` cannot
get there: they start from the head's partition and only move images across its boundaries.
Spherical k-means on ``h`` from k-means++ starts can: on MNIST at USPS's class sizes SACC 0.832 ->
0.958 and CC 0.619 -> 0.632, at 100 classes CC 0.622 -> 0.680, on the long-tailed digits SACC
0.686 / 0.703 -> 0.723 / 0.810 with the refit (README, "k-means restarts for the methods with a
uniform prior").

UCCC's Eq. 6 has no such prior, and there the objective is no guide: on its digits checkpoints
restarts with a higher objective were worse (0.993 -> 0.979), so the rule that turns the restarts
on is the method's (``ClusterMethod.uniform_prior``), not the data's.

The objective is the one :mod:`clustering.split_merge` scores moves by, over unit-normalised rows x:
``J = sum_k || sum_{i in k} x_i ||`` (each row's cosine to its cluster's centroid, summed).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from clustering.kmeans import MAX_ITERATIONS, spherical_kmeans
from clustering.metrics import hungarian_mapping
from clustering.split_merge import objective

#: A restart replaces the head's partition where its objective is higher by more than this share.
#: Below it the two are one partition but for a few images on a boundary: on balanced sets the best
#: restart was the head's own Lloyd-converged partition, ahead by 0 to 3e-6 (a refit the rule for
#: ``refit_head`` had turned off there); the restarts that paid were ahead by 2e-5 (SACC at 200
#: classes, +0.03 ACC) to 5e-3.
MARGIN = 1e-5


def kmeans_plus_plus(x: Tensor, num_clusters: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding on the cosine distance ``1 - x_i . c`` over unit rows ``x`` (N, F): the
    first centre uniformly, each next one with probability proportional to its squared distance
    from the nearest centre so far. Returns (N,) each row's nearest seed."""
    n = x.shape[0]
    if n < num_clusters:
        raise ValueError(f"k-means++ needs at least as many rows ({n}) as clusters ({num_clusters})")
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [first]
    nearest = (1.0 - x @ x[first]).clamp_min(0.0)
    for _ in range(1, num_clusters):
        weights = nearest.square()
        if float(weights.sum()) <= 0.0:  # every row sits on a centre: any other row will do
            weights = torch.ones_like(weights).index_fill_(0, torch.tensor(centres, device=x.device), 0.0)
        pick = int(torch.multinomial(weights.float().cpu(), 1, generator=generator))
        centres.append(pick)
        nearest = torch.minimum(nearest, (1.0 - x @ x[pick]).clamp_min(0.0))
    return (x @ x[centres].T).argmax(dim=1)


def match_ids(labels: Tensor, reference: Tensor, num_clusters: int) -> Tensor:
    """``labels`` with its cluster ids renamed to overlap ``reference``'s most (the Hungarian mapping
    ACC uses, with ``reference`` as the classes), so a partition that replaces the head's keeps its
    cluster ids where it can. Ids in [0, num_clusters); either may leave some unused (a collapsed
    head): a cluster the mapping leaves out takes an id no other one has."""
    mapping = hungarian_mapping(reference.cpu().numpy(), labels.cpu().numpy())
    free = iter(sorted(set(range(num_clusters)) - set(mapping.values())))
    rename = torch.tensor([mapping[k] if k in mapping else next(free) for k in range(num_clusters)])
    return rename.to(labels.device)[labels]


def best_of_restarts(features: Tensor, own: Tensor, num_clusters: int, restarts: int, generator: torch.Generator,
                     max_iterations: int = MAX_ITERATIONS,
                     margin: float = MARGIN) -> tuple[Tensor | None, dict[str, float]]:  # fmt: skip
    """Spherical k-means on ``features`` (N, F) from ``restarts`` k-means++ starts, against
    ``own`` (N,), the partition it would otherwise keep (Lloyd-converged, so both are local optima).

    Returns the restarts' best partition (ids matched to ``own``) if its objective beats ``own``'s
    by more than ``margin`` of it, else None; and the notes ``restarts_won`` (1 or 0) and
    ``restarts_gain`` (the best restart's objective over ``own``'s, minus 1)."""
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    x = nn.functional.normalize(features.double(), dim=1)
    own = own.to(x.device).long()
    own_score = objective(x, own, num_clusters)
    best, best_score = None, -float("inf")
    for _ in range(restarts):
        _, labels, _ = spherical_kmeans(x, kmeans_plus_plus(x, num_clusters, generator), num_clusters, max_iterations)
        score = objective(x, labels, num_clusters)
        if score > best_score:
            best, best_score = labels, score
    assert best is not None
    won = best_score > own_score * (1.0 + margin)
    notes = {"restarts_won": float(won), "restarts_gain": best_score / own_score - 1.0}
    return (match_ids(best, own, num_clusters) if won else None), notes
