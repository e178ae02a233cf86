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

When a run finishes, :func:`fill_empty_clusters` does the same once more on the whole data set
without augmentation (counting every image, splitting along all of a donor's members), keeping
only the splits that leave no fewer clusters with images, since no training follows to correct one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
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
    def split(self, layer: nn.Linear, target: int, donor: int) -> None:
        """Give row ``target`` of ``layer`` (the head's last Linear) half of cluster ``donor``: along
        the donor's planned principal direction when one is ready, else a random one."""
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
            self.split(layer, target, donor)
        self.split_ready.zero_()
        return pairs


@torch.no_grad()
def fill_empty_clusters(head: nn.Module, h: Tensor, max_rounds: int = 30, donors_per_cluster: int = 8) -> int:
    """Re-seed, on a whole data set without augmentation, the clusters no image chooses: the end of
    a run's re-seeding (the ``reseed_final`` option of the methods with ``reseed_empty``).

    During training the re-seeder counts augmented views over an epoch, so a cluster that empties in
    the last epoch (at 100 clusters of 20 images one or two did, every epoch) ends the run empty.
    Here the counts are every image's argmax under ``head`` (eval mode) on the backbone features
    ``h`` (N, F). Each empty cluster takes half of one of the largest clusters, split along the
    principal direction of all its members, as :class:`EmptyClusterReseeder` splits. No training
    follows to undo a bad split, so a split is kept only if the empty cluster gains images and no
    fewer clusters have images than before (else the next largest donor is tried, up to
    ``donors_per_cluster``): the number of non-empty clusters never falls. A kept split may take the
    one image of a small cluster (at 200 classes most did); a later round, with splits planned
    afresh, fills that one. Rounds repeat while they keep a split, up to ``max_rounds``. Edits the
    head's last Linear layer in place; returns the clusters re-seeded.
    """
    layer = last_linear(head)
    num_clusters = layer.out_features
    was_training = head.training
    head.eval()
    h = h.to(layer.weight)
    features = last_linear_input(head, h)
    # Only the last Linear changes: its inputs are fixed, and a split recomputes two logit columns.
    # (A head with layers after it, e.g. UCCC's logit normalisation, is run whole instead.)
    plain = next(reversed(list(head.children())), None) is layer

    def logits() -> Tensor:
        return features @ layer.weight.T + (layer.bias if layer.bias is not None else 0.0) if plain else head(h)

    def choices_after_split(current: Tensor, best: Tensor, chosen: Tensor, rows: list[int]
                            ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        """(new columns ``rows`` of the logits, or all of them for a head that is not plain; best
        logit; argmax) of every image once ``rows`` of the layer have changed. With the plain head
        only two columns change: an image of one of those clusters takes its best over the new
        row, any other image moves only if a new column beats its best (thousands of trials at 200
        clusters, each O(N) instead of O(N C))."""
        if not plain:
            trial = logits()
            return (trial, *trial.max(dim=1))
        cols = features @ layer.weight[rows].T
        if layer.bias is not None:
            cols = cols + layer.bias[rows]
        best, chosen = best.clone(), chosen.clone()
        members = (chosen == rows[0]) | (chosen == rows[1])
        own = current[members]
        own[:, rows] = cols[members]
        best[members], chosen[members] = own.max(dim=1)
        col_best, col = cols.max(dim=1)
        moves = ~members & (col_best > best)
        best[moves], chosen[moves] = col_best[moves], torch.tensor(rows, device=col.device)[col[moves]]
        return cols, best, chosen

    done = 0
    try:
        for _ in range(max_rounds):
            current = logits()
            best, chosen = current.max(dim=1)
            sizes = torch.bincount(chosen, minlength=num_clusters)
            empty = torch.nonzero(sizes == 0).flatten().tolist()
            if not empty:
                break
            planner = EmptyClusterReseeder(num_clusters, len(h), layer.in_features).to(layer.weight.device)
            planner.observe(torch.softmax(current, dim=1), h, head)  # plans every cluster's split
            donors = [d for d in torch.argsort(sizes, descending=True, stable=True).tolist() if sizes[d] >= 2]
            progress = False
            for target in empty:
                for donor in donors[:donors_per_cluster]:
                    rows = [target, donor]
                    saved = layer.weight[rows].clone(), None if layer.bias is None else layer.bias[rows].clone()
                    planner.split(layer, target, donor)
                    new_logits, trial_best, trial_chosen = choices_after_split(current, best, chosen, rows)
                    after = torch.bincount(trial_chosen, minlength=num_clusters)
                    if after[target] > 0 and (after > 0).sum() >= (sizes > 0).sum():
                        if plain:
                            current[:, rows] = new_logits
                        else:
                            current = new_logits
                        best, chosen, sizes = trial_best, trial_chosen, after
                        donors.remove(donor)  # its planned direction is for its members before the split
                        done, progress = done + 1, True
                        break
                    layer.weight[rows] = saved[0]
                    if layer.bias is not None:
                        layer.bias[rows] = saved[1]
            if not progress:
                break
    finally:
        head.train(was_training)
    return done


def reseed_at_end(reseeder: EmptyClusterReseeder | None, final: bool, head: nn.Module,
                  embed: Callable[[], dict[str, Any]], attempts: int = 3) -> dict[str, float]:  # fmt: skip
    """A method's ``on_train_end`` with ``reseed_empty`` (``reseeder`` not None) and ``reseed_final``
    (``final``): :func:`fill_empty_clusters` on ``embed()``'s backbone features (the whole data set,
    no augmentation). The fill counts in float32; ``embed`` (which the run's last evaluation uses)
    may run in bfloat16 or float16, where an image on a boundary can choose the other side, so the
    result is checked with ``embed`` and filled again, up to ``attempts`` times. Returns the metrics
    row's entry, or nothing when either option is off."""
    if reseeder is None or not final:
        return {}
    num_clusters, done = last_linear(head).out_features, 0
    for _ in range(attempts):
        emb = embed()
        if np.unique(np.asarray(emb["probs"]).argmax(axis=1)).size == num_clusters:
            break
        filled = fill_empty_clusters(head, torch.from_numpy(np.asarray(emb["h"], dtype=np.float32)))
        if not filled:
            break
        done += filled
    return {"final_reseeds": float(done)}
