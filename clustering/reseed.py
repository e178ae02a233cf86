"""Re-seeding clusters that stay empty: DeepCluster's empty-cluster fix, on a softmax head.

A cluster that no image chooses gets no gradient that would make an image choose it, so once
empty it tends to stay empty: at 40 classes of 10 images, 5-minute UCCC runs ended with 38-39 of
40 clusters, two classes merged in one. DeepCluster (Caron et al., 2018, Sec. 3.3) restarts an
empty k-means centroid as a perturbed copy of a non-empty one; here the centroid is a row of the
cluster head's last linear layer. Over a window of one epoch's images the argmax of every training
image is counted; each cluster with no image takes the largest cluster's row split in two:

    w_empty = w_big + delta,  w_big = w_big - delta,  b_empty = b_big = b_big - log 2

so no other cluster's logit moves, the big cluster's probability is shared between the two halves
(exp(l + d) + exp(l - d) = 2 exp(l) cosh d: to first order in delta; the empty cluster's old
logit, which no image had chosen, is given up), and the sign of delta . h decides which half an
image of the big cluster now picks.
The method's own loss then decides whether the split stays (if the two halves are one class, the
graphs pull them back together and the row empties again). It adds no term to the loss and does
not touch a cluster that any image chooses.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: Size of the split's perturbation, relative to the norm of the big cluster's row.
SPLIT_SCALE = 0.1


def last_linear(head: nn.Module) -> nn.Linear:
    """The head's last ``nn.Linear`` (the one whose rows are the clusters)."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"{type(head).__name__} has no Linear layer")
    return linears[-1]


def last_linear_input(head: nn.Module, h: Tensor) -> Tensor:
    """What the head's last Linear layer sees for backbone features ``h``: the layers before it
    applied (for the two-layer head, ReLU(Linear(h)))."""
    layer, out = last_linear(head), h
    for module in head.children():
        if module is layer:
            return out
        out = module(out)
    raise TypeError(f"the last Linear of {type(head).__name__} is not one of its direct children")


def maybe_reseeder(enabled: bool, head: nn.Module, num_samples: int) -> EmptyClusterReseeder | None:
    """A reseeder for ``head`` with a window of one epoch (``num_samples`` images) when ``enabled``."""
    if not enabled:
        return None
    layer = last_linear(head)
    return EmptyClusterReseeder(layer.out_features, num_samples, layer.in_features)


class EmptyClusterReseeder(nn.Module):
    """Counts training argmaxes over a window of ``window`` images and re-seeds the empty clusters.

    The split of a donor follows its members: on the last batch of a window, the principal
    direction of the donor's members' head activations (the inputs of the last Linear layer, given
    to :meth:`observe` as ``features``) becomes the perturbation, and the biases put the boundary at
    the members' mean projection, one standard deviation of it giving a logit gap of 2 — bisecting
    k-means's split (principal direction divisive partitioning, Boley 1998), so each half is a
    coherent group whose views agree, which a random direction is not (its halves re-merged).
    A donor with fewer than 2 members in that batch gets a random direction.

    Buffers (so a checkpoint resumes mid-window): ``counts`` (C,) argmaxes in the current window,
    ``seen`` images in it, ``reseeds`` clusters re-seeded so far (also seeds random directions),
    and the pending split of every cluster (``split_dirs``, ``split_offsets``, ``split_scales``,
    ``split_ready``). Under DDP call :meth:`observe` with gathered rows: every process then counts
    the same, computes the same directions and applies the same split.
    """

    def __init__(self, num_clusters: int, window: int, feature_dim: int = 0) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1 image, got {window}")
        self.window = int(window)
        self.register_buffer("counts", torch.zeros(num_clusters, dtype=torch.long))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("reseeds", torch.zeros((), dtype=torch.long))
        self.register_buffer("split_dirs", torch.zeros(num_clusters, feature_dim))
        self.register_buffer("split_offsets", torch.zeros(num_clusters))
        self.register_buffer("split_scales", torch.ones(num_clusters))
        self.register_buffer("split_ready", torch.zeros(num_clusters, dtype=torch.bool))

    @torch.no_grad()
    def observe(self, probs: Tensor, h: Tensor | None = None, head: nn.Module | None = None) -> None:
        """Count the argmax of each row of ``probs`` (B, C): one view of the (global) batch.
        ``h`` (B, F): the same rows' backbone features and ``head`` the cluster head; on the batch
        that completes the window they give every cluster's split direction."""
        assigned = probs.argmax(dim=1)
        self.counts += torch.bincount(assigned, minlength=self.counts.numel()).to(self.counts)
        self.seen += probs.shape[0]
        if h is not None and head is not None and int(self.seen) >= self.window:
            features = last_linear_input(head, h.detach()).float()
            if features.shape[1] == self.split_dirs.shape[1]:
                self._plan_splits(assigned, features)

    def _plan_splits(self, assigned: Tensor, features: Tensor) -> None:
        self.split_ready.zero_()
        for cluster in torch.unique(assigned).tolist():
            members = features[assigned == cluster]
            if members.shape[0] < 2:
                continue
            centred = members - members.mean(dim=0)
            direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
            projection = members @ direction
            spread = float(projection.std())
            if not spread > 1e-6:
                continue
            self.split_dirs[cluster] = direction.to(self.split_dirs)
            self.split_offsets[cluster] = float(projection.mean())
            self.split_scales[cluster] = spread
            self.split_ready[cluster] = True

    @torch.no_grad()
    def step(self, head: nn.Module) -> list[tuple[int, int]]:
        """At the end of a window, split the largest clusters into the empty ones; call before the
        forward pass (parameters change in place). Returns the (empty, donor) pairs re-seeded."""
        if int(self.seen) < self.window:
            return []
        counts = self.counts.clone()
        self.counts.zero_()
        self.seen.zero_()
        empty = torch.nonzero(counts == 0).flatten().tolist()
        donors = torch.argsort(counts, descending=True, stable=True).tolist()
        donors = [d for d in donors if counts[d] >= 2][: len(empty)]  # each donor splits once
        layer = last_linear(head)
        pairs = list(zip(empty, donors, strict=False))
        for target, donor in pairs:
            offset = 0.0
            if bool(self.split_ready[donor]):
                scale = float(self.split_scales[donor])
                delta = self.split_dirs[donor].to(layer.weight) / scale
                offset = float(self.split_offsets[donor]) / scale
            else:
                generator = torch.Generator().manual_seed(7919 * int(self.reseeds) + 1)
                direction = torch.randn(layer.weight.shape[1], generator=generator).to(layer.weight)
                delta = SPLIT_SCALE * layer.weight[donor].norm() * direction / direction.norm()
            layer.weight[target] = layer.weight[donor] + delta
            layer.weight[donor] -= delta
            if layer.bias is not None:
                layer.bias[donor] -= math.log(2.0)
                layer.bias[target] = layer.bias[donor] - offset
                layer.bias[donor] += offset
            self.reseeds += 1
        self.split_ready.zero_()
        return pairs
