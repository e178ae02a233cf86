"""Spherical k-means (Lloyd's iterations on the cosine) from a given partition.

Shared by the end-of-run head refit (:mod:`clustering.head_refit`) and the split-and-merge moves
(:mod:`clustering.split_merge`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Lloyd's iterations at most; on the suite's checkpoints the assignments stopped moving within 40.
MAX_ITERATIONS = 100


def spherical_kmeans(features: Tensor, start: Tensor, num_clusters: int,
                     max_iterations: int = MAX_ITERATIONS) -> tuple[Tensor, Tensor, int]:  # fmt: skip
    """Spherical k-means from a given partition.

    features: (N, F) rows, normalised here. start: (N,) cluster of each row in [0, num_clusters).
    Returns (centroids (C, F) of unit norm, labels (N,): each row's most similar centroid,
    iterations run). Before each update a cluster without rows takes the row least similar to its
    own centroid among clusters of 2+ rows; that row is then its cluster's centroid, so at
    convergence (no row moves) every cluster has rows.
    """
    x = nn.functional.normalize(features.double(), dim=1)
    labels = start.to(x.device).long()
    centroids = centroids_of(x, labels, num_clusters)
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        labels = _fill_empty(x, labels, num_clusters)
        centroids = centroids_of(x, labels, num_clusters)
        nearest = (x @ centroids.T).argmax(dim=1)
        converged = bool((nearest == labels).all())
        labels = nearest
        if converged:
            break
    return centroids, labels, iterations


def centroids_of(x: Tensor, labels: Tensor, num_clusters: int) -> Tensor:
    """(C, F) the normalised sum of each cluster's rows (zero for a cluster without rows)."""
    return nn.functional.normalize(x.new_zeros(num_clusters, x.shape[1]).index_add_(0, labels, x), dim=1)


def _fill_empty(x: Tensor, labels: Tensor, num_clusters: int) -> Tensor:
    sizes = torch.bincount(labels, minlength=num_clusters)
    empty = torch.nonzero(sizes == 0).flatten().tolist()
    if not empty:
        return labels
    labels = labels.clone()
    fit = (x * centroids_of(x, labels, num_clusters)[labels]).sum(dim=1)  # cosine to its own centroid
    for cluster in empty:
        donors = sizes[labels] >= 2
        if not bool(donors.any()):
            break
        row = int(torch.where(donors, fit, torch.full_like(fit, float("inf"))).argmin())
        sizes[labels[row]] -= 1
        sizes[cluster] += 1
        labels[row], fit[row] = cluster, float("inf")
    return labels
