"""GCC: Graph Contrastive Clustering (``papers/gcc.txt``).

At the start of every ``graph_every``-th epoch the whole data set is embedded, the feature bank
is moved towards the new features, ``bank = normalize((1 - alpha) * bank + alpha * z)`` (Sec.
3.3.1; the first bank is z itself), and the kNN graph (Eq. 6) is rebuilt from the bank. Bank,
neighbour table and degrees are buffers, so checkpoints and resume carry them.

A training step takes a weak view of every batch image and a weak view of one random graph
neighbour of it (Algorithm 1, steps 1-2), forwards the 2B views together and minimises
L = L_RGC + lambda * L_AGC + eta * L_CR (Eq. 11).

Decisions where the paper is silent:
- RGC (Eq. 8) runs over the 2B views. Two views are linked when their samples are the same or
  are kNN neighbours (either direction, Eq. 6); the Laplacian weight of a link is
  1 / sqrt(d_i d_j) with the degrees of the full graph, counting a self-loop (a sample is always
  its own neighbour, so two views of one image form a positive pair of weight 1 / d_i).
- ``--param instance_views=true`` adds a second view of every image to RGC, as the authors'
  code does (an image and its augmentation in the contrastive loss). On the digits it was behind
  after 5 minutes (ACC 0.72 against 0.77 with SGD 0.1; 0.55 against 0.78 after 35 epochs with
  Adam), so it is off by default.
- The random neighbour RN(i) is drawn from the k neighbours plus the sample itself
  (``include_self``), as in the SCAN-style neighbour tables GCC builds on; this keeps an
  instance-level positive in every batch while the graph is still poor.
- L_CR (Eq. 10) uses the batch views' probabilities (the paper's q of "I"; no third,
  unaugmented forward pass).
- L_AGC measures column agreement by cosine similarity (CC's choice; ``agc_cosine``, default
  on), not by Eq. 9's raw dot products. Measured on the digits (small CNN, batch 256): with raw
  dot products q_k . q~_k grows to about N / K = 25 once assignments sharpen, the K-way softmax
  of Eq. 9 saturates (L_AGC fell to 0.002 by epoch 20) and the cluster head stops learning at
  ACC 0.50 while the kNN graph is 96% label-consistent; the same happened with SGD 0.05, SGD 0.1
  and Adam 1e-3 (ACC 0.50-0.56 after 50-90 epochs). With cosine agreement L_AGC stays
  informative and ACC keeps rising (0.75 after 64 epochs with SGD 0.1, 0.78 after 88 with Adam
  1e-3). ``--param agc_cosine=false`` gives the literal Eq. 9.
- Training defaults follow the backbone: ResNets keep the paper's SGD (lr 0.4, momentum 0.9,
  wd 1e-4, cosine decay, batch 256) and RGC tau 0.1; on the small CNN, where those stall, GCC
  trains with Adam 1e-3 and tau 0.5 (the runs that led there: README, "GCC: lab notes").
  ``--param rgc_temperature=0.1`` and ``--optimizer sgd --lr 0.4 --scheduler cosine
  --weight-decay 1e-4`` restore the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from clustering.augment import to_float
from clustering.data_defaults import choose_instance_temperature
from clustering.errors import ConfigError
from clustering.losses import assignment_contrastive_loss, balance_loss, graph_contrastive_loss
from clustering.methods.common import fetch, out_features, require_images
from clustering.methods.defaults import TrainDefaults
from clustering.methods.registry import Batch, ClusterMethod, EpochContext, StepOutput, register_method
from clustering.models import ClusterModel
from clustering.neighbors import draw_neighbors, knn_indices
from clustering.reseed import maybe_reseeder, reseed_at_end


@dataclass
class GCCParams:
    """GCC hyperparameters (paper defaults).

    neighbors: k of the kNN graph (Eq. 6).
    alpha: weight of the new features in the moving average of the bank (Sec. 3.3.1).
    graph_every: rebuild the graph every this many epochs (Algorithm 1: every epoch).
    rgc_temperature / agc_temperature: tau of Eq. 8 (0.1) and Eq. 9 (1.0).
    agc_weight / cr_weight: lambda (0.5) and eta (1.0) of Eq. 11.
    include_self: draw the random neighbour from the k neighbours and the sample itself.
    agc_cosine: L2-normalise the assignment columns in Eq. 9 (the paper uses raw dot products,
        which saturate at practical batch sizes; see the module docstring).
    instance_views: RGC also sees a second view of every batch image, as the authors' code does
        (the paper's Eq. 8 has one view per image and only graph links as positives).
    reseed_empty: re-seed clusters that stay empty (:mod:`clustering.reseed`); not in the paper,
        on by default since it kept GCC level or ahead on every set of the development suite and
        lifted it above k-means on 40 classes of 10 images (README); ``false`` is the paper.
    reseed_final: with ``reseed_empty``, re-seed the clusters still empty on the whole data set when
        the run finishes (as UCCC's ``reseed_final``).

    Backbone defaults (``train_defaults.by_backbone``): on ``cnn`` rgc_temperature is 0.5. Unset, it
    is also at most 0.5 sqrt(40 / C) above 40 clusters (``clustering.data_defaults``
    ``choose_instance_temperature``, as the other methods' instance contrast: 0.224 at 200 clusters,
    where 0.5 left the classes mixed in z; README).
    """

    neighbors: int = 5
    alpha: float = 0.5
    graph_every: int = 1
    rgc_temperature: float = 0.1
    agc_temperature: float = 1.0
    agc_weight: float = 0.5
    cr_weight: float = 1.0
    include_self: bool = True
    agc_cosine: bool = True
    instance_views: bool = False
    reseed_empty: bool = True
    reseed_final: bool = True
    #: What runs saved before a parameter existed were trained with (``load_run_config``).
    VALUE_BEFORE_ADDED: ClassVar[dict[str, Any]] = {"reseed_empty": False, "reseed_final": False}

    def validate(self) -> None:
        if self.neighbors < 1:
            raise ValueError(f"neighbors must be >= 1, got {self.neighbors}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if self.graph_every < 1:
            raise ValueError(f"graph_every must be >= 1, got {self.graph_every}")
        if self.rgc_temperature <= 0 or self.agc_temperature <= 0:
            raise ValueError("temperatures must be > 0")
        if self.agc_weight < 0 or self.cr_weight < 0:
            raise ValueError("loss weights must be >= 0")


def symmetric_degree(neighbors: Tensor) -> Tensor:
    """(N,) degree of the symmetrised kNN graph (Eq. 6: j in N(i) or i in N(j)) plus a self-loop."""
    import scipy.sparse as sp

    nb = neighbors.cpu().numpy()
    n, k = nb.shape
    s = sp.csr_matrix((np.ones(n * k, dtype=np.float32), (np.repeat(np.arange(n), k), nb.ravel())), shape=(n, n))
    a = ((s + s.T) > 0).astype(np.float32)
    a.setdiag(0)
    return torch.from_numpy(np.asarray(a.sum(axis=1)).ravel() + 1.0).float()


def batch_weights(samples: Tensor, neighbors: Tensor, degree: Tensor) -> Tensor:
    """(M, M) Laplacian weights between views of ``samples`` (M,): 1/sqrt(d_i d_j) when the
    samples are equal or kNN-linked, else 0; the diagonal is 0."""
    nb = neighbors[samples]  # (M, k)
    forward = (nb[:, None, :] == samples[None, :, None]).any(dim=-1)  # sample v in N(sample u)
    linked = forward | forward.T | (samples[:, None] == samples[None, :])
    linked.fill_diagonal_(False)
    d = degree[samples]
    return linked.float() / torch.sqrt(d[:, None] * d[None, :])


@register_method
class GCC(ClusterMethod):
    """Graph contrastive clustering: RGC over kNN-linked views, AGC with a random neighbour's view,
    and the cluster regulariser.

    Training defaults: the paper's SGD (lr 0.4, momentum 0.9, wd 1e-4, cosine, batch 256) and
    tau 0.1 on ResNets; Adam 1e-3 and tau 0.5 on the small CNN (module docstring: measurements).
    """

    name = "gcc"
    description = "kNN graph over moving-averaged features: graph contrastive RGC + neighbour AGC + log K - H"
    Params = GCCParams
    sample_buffers = ("bank", "neighbors", "degree")
    # AGC contrasts each cluster's column over the batch with its neighbours' column; 5 images a
    # cluster against 2.5 on 400 images of 40 classes: 0.735 / 0.792 against 0.682 / 0.708
    # (two-digit numbers), 0.790 / 0.762 against 0.755 / 0.738 (subjects), seeds 0 / 1.
    column_contrast = True
    uniform_prior = True  # L_CR, the entropy of the batch's mean assignment
    param_rules = {"rgc_temperature": choose_instance_temperature}
    train_defaults = TrainDefaults(
        optimizer="sgd", lr=0.4, weight_decay=1e-4, scheduler="cosine", batch_size=256,
        by_backbone={"cnn": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "scheduler": "none",
                             "params": {"rgc_temperature": 0.5}}},
    )  # fmt: skip

    def __init__(self, model: ClusterModel, params: GCCParams, num_samples: int) -> None:
        super().__init__()
        require_images(model, self.name)
        if num_samples <= params.neighbors:
            raise ValueError(f"GCC needs more samples ({num_samples}) than graph neighbours ({params.neighbors})")
        self.model = model
        self.params = params
        dim = out_features(model.instance_head)
        self.register_buffer("bank", torch.zeros(num_samples, dim))
        self.register_buffer("neighbors", torch.zeros(num_samples, params.neighbors, dtype=torch.long))
        self.register_buffer("degree", torch.ones(num_samples))
        self.register_buffer("graph_ready", torch.tensor(False))
        self.reseeder = maybe_reseeder(params.reseed_empty, model.cluster_head, num_samples)

    # ------------------------------------------------------------------ graph

    @torch.no_grad()
    def update_graph(self, z: Tensor) -> None:
        """Fold the features ``z`` (N, d) of the whole data set into the bank, rebuild the graph."""
        if z.shape != self.bank.shape:
            raise ValueError(f"expected features of shape {tuple(self.bank.shape)}, got {tuple(z.shape)}")
        z = F.normalize(z.to(self.bank.device).float(), dim=1)
        if bool(self.graph_ready):
            a = self.params.alpha
            z = F.normalize((1 - a) * self.bank + a * z, dim=1)
        self.bank.copy_(z)
        self.neighbors.copy_(knn_indices(self.bank, self.params.neighbors))
        self.degree.copy_(symmetric_degree(self.neighbors))
        self.graph_ready.fill_(True)

    def on_epoch_start(self, context: EpochContext) -> None:
        if bool(self.graph_ready) and context.epoch % self.params.graph_every != 0:
            return
        self.update_graph(torch.from_numpy(np.asarray(context.embed()["z"])))

    @torch.no_grad()
    def embed_all(self, inputs: Tensor, chunk: int = 1024) -> Tensor:
        """(N, d) instance features of ``inputs`` (uint8 images), unaugmented, in eval mode."""
        was_training = self.model.training
        self.model.eval()
        try:
            device = self.bank.device
            zs = [self.model(to_float(inputs[i : i + chunk].to(device))).z for i in range(0, len(inputs), chunk)]
        finally:
            self.model.train(was_training)
        return torch.cat(zs)

    def random_neighbors(self, indices: Tensor, generator: torch.Generator | None) -> Tensor:
        """RN(i) for every index: uniform over the k neighbours (and i itself with ``include_self``)."""
        return draw_neighbors(self.neighbors, indices, generator, self.params.include_self)

    # ------------------------------------------------------------------ step

    def on_train_end(self, context: EpochContext) -> dict[str, float]:
        return reseed_at_end(self.reseeder, self.params.reseed_final, self.model.cluster_head, context.embed)

    def training_step(self, batch: Batch) -> StepOutput:
        p = self.params
        if self.reseeder is not None:
            self.reseeder.step(self.model.cluster_head)
        x, views = batch.inputs, batch.views
        if not bool(self.graph_ready):  # the trainer builds it in on_epoch_start; other callers get it here
            if batch.dataset_inputs is None:
                raise ConfigError("GCC needs Batch.dataset_inputs (the trainer fills it)")
            self.update_graph(self.embed_all(batch.dataset_inputs))
        nbr = self.random_neighbors(batch.indices, batch.generator)
        x_nbr = fetch(batch.dataset_inputs, nbr, x, self.name)
        # Views in blocks of n rows: [view a of x; (view b of x;) view of RN(x)].
        blocks = [batch.indices.to(nbr.device)] * (2 if p.instance_views else 1) + [nbr]
        out = self.model(torch.cat([views.weak(x) for _ in blocks[:-1]] + [views.weak(x_nbr)]))
        # Under DDP the graph terms span the global batch: gather each block (and its sample ids)
        # separately, keeping the single-process block order; the identity in one process.
        samples = torch.cat(batch.gather_views(torch.cat(blocks), len(blocks)))
        z = torch.cat(batch.gather_views(out.z, len(blocks)))
        probs = batch.gather_views(out.probs, len(blocks))
        q, q_nbr = probs[0], probs[-1]
        if self.reseeder is not None:
            self.reseeder.observe(q.detach(), batch.first_view_rows(out.h), self.model.cluster_head)
        weights = batch_weights(samples, self.neighbors, self.degree).to(z.device)
        loss_rgc = graph_contrastive_loss(z, weights, p.rgc_temperature)
        loss_agc = assignment_contrastive_loss(q, q_nbr, p.agc_temperature, cosine=p.agc_cosine)
        loss_cr = balance_loss(q)
        loss = loss_rgc + p.agc_weight * loss_agc + p.cr_weight * loss_cr
        return StepOutput(loss=loss, parts={"loss_rgc": loss_rgc, "loss_agc": loss_agc, "loss_cr": loss_cr})
