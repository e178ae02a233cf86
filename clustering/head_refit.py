"""Refitting the cluster head when a run finishes: its partition re-centred in the backbone's features.

At many clusters of few images each the head lags the representation it reads: on 200 classes of
20 images, 5-minute UCCC runs ended with the head at 0.436-0.588 where k-means on the same
backbone features h reached 0.58-0.73, and CC at 100 classes had 0.443 against 0.62 (README,
"The head refit"). A cluster there gets one or two images a batch, so the head's rows learn from
few gradients while every image trains the backbone. Where clusters hold hundreds of images the
head is as good as its refit (digits 0.987 as trained, 0.979 refitted; -0.009 to +0.024 over 50
such checkpoints), so the refit is a rule of the data's shape
(``clustering.data_defaults.choose_refit_head``), not always on.

The refit starts from the head's own clusters and runs spherical k-means (Lloyd's iterations on
the cosine) over the whole data set's features ``h``: each cluster's centroid is the normalised
mean of its members' normalised features, each image joins its nearest centroid, until nothing
moves. Starting from the head keeps its clusters' identities and the method's choice of
partition; the iterations only move the images the head put on the wrong side of a boundary in
the features. A cluster left empty takes the image that fits its own centroid worst, so every
cluster keeps images.

The result is written into the head, so the checkpoint, ``eval`` on another split and the studio
all see it: the head's two layers become ReLU(I h) (the identity: every backbone here ends in a
ReLU, so h >= 0 and ReLU(h) = h) and s c_k . h, whose argmax is the nearest centroid in cosine
(||h|| is the same for every k). ``s`` keeps the head's mean confidence over the data set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

#: Lloyd's iterations at most; on the suite's checkpoints the assignments stopped moving within 40.
MAX_ITERATIONS = 100


def refittable(head: nn.Module) -> str | None:
    """None when ``head`` is the two-layer Linear(F, F)-ReLU-Linear(F, C) head; else why not."""
    layers = list(head.children()) if isinstance(head, nn.Sequential) else []
    kinds = [type(m) for m in layers]
    if kinds != [nn.Linear, nn.ReLU, nn.Linear]:
        found = ", ".join(k.__name__ for k in kinds) or type(head).__name__
        return f"the cluster head is not Linear-ReLU-Linear ({found})"
    first = layers[0]
    if first.in_features != first.out_features:
        return f"the head's hidden layer ({first.out_features}) is not as wide as its input ({first.in_features})"
    return None


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
    centroids = _centroids(x, labels, num_clusters)
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        labels = _fill_empty(x, labels, num_clusters)
        centroids = _centroids(x, labels, num_clusters)
        nearest = (x @ centroids.T).argmax(dim=1)
        converged = bool((nearest == labels).all())
        labels = nearest
        if converged:
            break
    return centroids, labels, iterations


def _centroids(x: Tensor, labels: Tensor, num_clusters: int) -> Tensor:
    """(C, F) the normalised sum of each cluster's rows (zero for a cluster without rows)."""
    return nn.functional.normalize(x.new_zeros(num_clusters, x.shape[1]).index_add_(0, labels, x), dim=1)


def _fill_empty(x: Tensor, labels: Tensor, num_clusters: int) -> Tensor:
    sizes = torch.bincount(labels, minlength=num_clusters)
    empty = torch.nonzero(sizes == 0).flatten().tolist()
    if not empty:
        return labels
    labels = labels.clone()
    fit = (x * _centroids(x, labels, num_clusters)[labels]).sum(dim=1)  # cosine to its own centroid
    for cluster in empty:
        donors = sizes[labels] >= 2
        if not bool(donors.any()):
            break
        row = int(torch.where(donors, fit, torch.full_like(fit, float("inf"))).argmin())
        sizes[labels[row]] -= 1
        sizes[cluster] += 1
        labels[row], fit[row] = cluster, float("inf")
    return labels


@torch.no_grad()
def refit_head(head: nn.Module, h: Tensor, max_iterations: int = MAX_ITERATIONS) -> dict[str, float]:
    """Rewrite ``head`` (see :func:`refittable`) as the spherical k-means of its own partition of
    ``h`` (N, F), the whole data set's backbone features. Returns the metrics row's entries:
    ``refit_moved`` (share of images that changed cluster) and ``refit_iterations``."""
    why_not = refittable(head)
    if why_not is not None:
        raise TypeError(why_not)
    first, last = head[0], head[2]
    h = h.to(first.weight.device, torch.float32)
    if bool((h < 0).any()):
        raise ValueError("the backbone features have negative entries; the refit needs h >= 0 (a ReLU last)")
    was_training = head.training
    head.eval()
    try:
        before_logits = head(h)
        before = before_logits.argmax(dim=1)
        confidence = float(before_logits.softmax(dim=1).amax(dim=1).mean())
        centroids, _, iterations = spherical_kmeans(h, before, last.out_features, max_iterations)
        first.weight.copy_(torch.eye(first.in_features))
        first.bias.zero_()
        scale = _scale_for_confidence(h.double() @ centroids.T, confidence)
        last.weight.copy_(centroids * scale)
        if last.bias is not None:
            last.bias.zero_()
        after = head(h).argmax(dim=1)
    finally:
        head.train(was_training)
    return {"refit_moved": float((after != before).float().mean()), "refit_iterations": float(iterations)}


def _scale_for_confidence(logits: Tensor, confidence: float, steps: int = 40) -> float:
    """The factor s for which softmax(s logits) has mean top probability ``confidence`` (bisection
    on log s; the mean top probability grows with s)."""
    target = min(max(confidence, 1.0 / logits.shape[1] + 1e-6), 1.0 - 1e-6)
    lo, hi = -6.0, 6.0  # log10 s
    for _ in range(steps):
        mid = (lo + hi) / 2
        top = (logits * 10**mid).softmax(dim=1).amax(dim=1).mean()
        lo, hi = (mid, hi) if float(top) < target else (lo, mid)
    return float(10 ** ((lo + hi) / 2))


def refit_at_end(head: nn.Module, embed: Callable[[], dict[str, Any]]) -> dict[str, float]:
    """The trainer's end-of-run refit on ``embed()``'s features (the whole data set, no augmentation)."""
    emb = embed()
    return refit_head(head, torch.from_numpy(np.asarray(emb["h"], dtype=np.float32)))
