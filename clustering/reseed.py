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


def maybe_reseeder(enabled: bool, num_clusters: int, num_samples: int) -> EmptyClusterReseeder | None:
    """A reseeder with a window of one epoch (``num_samples`` images) when ``enabled``."""
    return EmptyClusterReseeder(num_clusters, num_samples) if enabled else None


class EmptyClusterReseeder(nn.Module):
    """Counts training argmaxes over a window of ``window`` images and re-seeds the empty clusters.

    Buffers (so a checkpoint resumes mid-window): ``counts`` (C,) argmaxes in the current window,
    ``seen`` images in it, ``reseeds`` clusters re-seeded so far (also seeds the perturbation).
    Under DDP call :meth:`observe` with gathered rows: every process then counts the same, draws
    the same perturbation and applies the same split.
    """

    def __init__(self, num_clusters: int, window: int) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1 image, got {window}")
        self.window = int(window)
        self.register_buffer("counts", torch.zeros(num_clusters, dtype=torch.long))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("reseeds", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def observe(self, probs: Tensor) -> None:
        """Count the argmax of each row of ``probs`` (B, C): one view of the (global) batch."""
        self.counts += torch.bincount(probs.argmax(dim=1), minlength=self.counts.numel()).to(self.counts)
        self.seen += probs.shape[0]

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
            generator = torch.Generator().manual_seed(7919 * int(self.reseeds) + 1)
            direction = torch.randn(layer.weight.shape[1], generator=generator).to(layer.weight)
            delta = SPLIT_SCALE * layer.weight[donor].norm() * direction / direction.norm()
            layer.weight[target] = layer.weight[donor] + delta
            layer.weight[donor] -= delta
            if layer.bias is not None:
                layer.bias[donor] -= math.log(2.0)
                layer.bias[target] = layer.bias[donor]
            self.reseeds += 1
        return pairs
