"""Refitting the cluster head when a run finishes: its partition re-centred in the backbone's features.

At many clusters of few images each the head lags the representation it reads: on 200 classes of
20 images, 5-minute UCCC runs ended with the head at 0.436-0.588 where k-means on the same
backbone features h reached 0.58-0.73, and CC at 100 classes had 0.443 against 0.62 (README,
"The head refit"). A cluster there gets one or two images a batch, so the head's rows learn from
few gradients while every image trains the backbone. Where clusters hold hundreds of images the
head is as good as its refit (digits 0.987 as trained, 0.979 refitted; -0.009 to +0.024 over 50
such checkpoints), so the refit is a rule of the data's shape
(``clustering.data_defaults.choose_refit_head``), not always on; except for the methods whose head
trains under a uniform prior on cluster sizes (CC, SACC, GCC), where it gained at every size
(GCC on digits 0.903 -> 0.970), and where k-means restarts may then replace the partition
(:mod:`clustering.kmeans_restarts`).

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

from clustering.kmeans import MAX_ITERATIONS, centroids_of, spherical_kmeans
from clustering.kmeans_restarts import best_of_restarts, match_ids
from clustering.split_merge import split_merge as split_merge_moves
from clustering.umap_gmm import IF_UNEVEN, umap_gmm_partition


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


@torch.no_grad()
def refit_head(head: nn.Module, h: Tensor, max_iterations: int = MAX_ITERATIONS, *, lloyd: bool = True,
               split_merge: bool = False, restarts: int = 0, umap_gmm: bool = False,
               generator: torch.Generator | None = None, seed: int = 0) -> dict[str, float]:  # fmt: skip
    """Rewrite ``head`` (see :func:`refittable`) as the spherical k-means of its own partition of
    ``h`` (N, F), the whole data set's backbone features.

    ``umap_gmm``: the partition of UMAP + GMM on ``h`` (:mod:`clustering.umap_gmm`, from ``seed``)
    replaces the head's, in place of ``lloyd``; the head becomes its nearest centroids in ``h``.
    ``lloyd``: Lloyd's iterations from the head's partition (the refit). ``restarts``: then that many
    k-means runs from k-means++ starts (drawn from ``generator``) against the head's Lloyd-converged
    partition; the best replaces the partition where its objective is higher
    (:mod:`clustering.kmeans_restarts`). ``split_merge``: then the merge-and-split moves of
    :mod:`clustering.split_merge` (each followed by Lloyd's iterations). With ``lloyd`` off the head
    is rewritten only when a restart won or a move was applied. Returns the metrics row's entries:
    ``refit_moved`` (share of images that changed cluster) when the head was rewritten,
    ``refit_iterations`` with ``lloyd``, ``umap_gmm_kept`` (share of images the partition left in the
    head's cluster, ids matched) with ``umap_gmm``, ``restarts_won`` and ``restarts_gain`` with ``restarts``,
    ``split_merge_moves`` with ``split_merge``."""
    why_not = refittable(head)
    if why_not is not None:
        raise TypeError(why_not)
    first, last = head[0], head[2]
    num_clusters = last.out_features
    h = h.to(first.weight.device, torch.float32)
    if bool((h < 0).any()):
        raise ValueError("the backbone features have negative entries; the refit needs h >= 0 (a ReLU last)")
    was_training = head.training
    head.eval()
    notes: dict[str, float] = {}
    try:
        before_logits = head(h)
        before = before_logits.argmax(dim=1)
        confidence = float(before_logits.softmax(dim=1).amax(dim=1).mean())
        labels = before
        if umap_gmm:
            # One assignment to the centroids: what the rewritten head computes (and every cluster keeps rows).
            _, labels, _ = spherical_kmeans(h, umap_gmm_partition(h, num_clusters, seed), num_clusters, 1)
            labels = match_ids(labels, before, num_clusters)
            notes["umap_gmm_kept"] = float((labels == before).float().mean())
        elif lloyd:
            _, labels, iterations = spherical_kmeans(h, before, num_clusters, max_iterations)
            notes["refit_iterations"] = float(iterations)
        if restarts:
            own = labels if lloyd or umap_gmm else spherical_kmeans(h, before, num_clusters, max_iterations)[1]
            generator = generator or torch.Generator().manual_seed(0)
            won, restart_notes = best_of_restarts(h, own, num_clusters, restarts, generator, max_iterations)
            notes |= restart_notes
            labels = won if won is not None else labels
        if split_merge and num_clusters >= 3:
            labels, moves = split_merge_moves(h, labels, num_clusters)
            notes["split_merge_moves"] = float(len(moves))
        if not (lloyd or umap_gmm) and not notes.get("split_merge_moves") and not notes.get("restarts_won"):
            return notes  # nothing to write: the head stays as trained
        centroids = centroids_of(nn.functional.normalize(h.double(), dim=1), labels.to(h.device), num_clusters)
        first.weight.copy_(torch.eye(first.in_features))
        first.bias.zero_()
        scale = _scale_for_confidence(h.double() @ centroids.T, confidence)
        last.weight.copy_(centroids * scale)
        if last.bias is not None:
            last.bias.zero_()
        after = head(h).argmax(dim=1)
    finally:
        head.train(was_training)
    return notes | {"refit_moved": float((after != before).float().mean())}


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


def end_steps(probs: np.ndarray, *, lloyd: bool, split_merge: bool, restarts: int,
              umap_gmm: bool | str | None) -> tuple[dict[str, Any], dict[str, float]]:
    """The steps of the end of a run for :func:`refit_head`, and the scalars that explain them, from
    the head's ``probs`` (N, C) over the whole data set. ``umap_gmm`` :data:`IF_UNEVEN` decides on
    the head's partition (:func:`clustering.methods.balance_switch.uneven`): uneven, UMAP + GMM alone
    replaces it (no refit, restarts or moves; the head's own end suits it only where it is even);
    even, the other steps as asked. The notes then hold ``largest_over_mean_at_end``."""
    # imported here: clustering.methods imports the evaluation, which imports this module
    from clustering.methods.balance_switch import uneven

    steps = {"lloyd": lloyd, "split_merge": split_merge, "restarts": restarts, "umap_gmm": umap_gmm is True}
    notes: dict[str, float] = {}
    if umap_gmm == IF_UNEVEN:
        is_uneven, notes["largest_over_mean_at_end"] = uneven(probs)
        if is_uneven:
            steps = {"lloyd": False, "split_merge": False, "restarts": 0, "umap_gmm": True}
    return steps, notes


def refit_at_end(head: nn.Module, embed: Callable[[], dict[str, Any]], *, lloyd: bool = True,
                 split_merge: bool = False, restarts: int = 0, umap_gmm: bool = False,
                 seed: int = 0) -> dict[str, float]:  # fmt: skip
    """The trainer's end-of-run refit on ``embed()``'s features (the whole data set, no augmentation);
    the restarts' starts and UMAP + GMM come from ``seed``, so a run's end is reproducible."""
    emb = embed()
    h = torch.from_numpy(np.asarray(emb["h"], dtype=np.float32))
    generator = torch.Generator().manual_seed(seed)
    return refit_head(head, h, lloyd=lloyd, split_merge=split_merge, restarts=restarts, umap_gmm=umap_gmm,
                      generator=generator, seed=seed)  # fmt: skip
