"""UCCC: Unsupervised Community-consensus Contrastive Clustering (``papers/uccc.txt``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clustering.data_defaults import (
    choose_cc_if_balanced,
    choose_detach_head_input,
    choose_instance_temperature,
    choose_strong_view,
    instance_contrast_temperature,
    uccc_cc_if_balanced,
    uccc_strong_view,
)
from clustering.errors import ConfigError
from clustering.evaluation import embed_all
from clustering.graph import community_assignments, positive_threshold, rank_graphs
from clustering.losses import cc_cluster_loss, multi_positive_nt_xent, neighbor_positives, nt_xent, uccc_cluster_loss
from clustering.methods.balance_switch import BalanceSwitch
from clustering.methods.common import fetch, paper_adam_defaults, require_images, set_detach_head_input, set_or_rule
from clustering.methods.registry import Batch, ClusterMethod, EpochContext, StepOutput, register_method
from clustering.models import ClusterModel
from clustering.neighbors import draw_neighbors, knn_indices
from clustering.reseed import maybe_reseeder, reseed_at_end


@dataclass
class UCCCParams:
    """UCCC hyperparameters.

    variant: ``cosine`` (default) measures the agreements of Eq. 6 by cosine similarity divided
        by ``cluster_temperature``; ``paper`` is Eq. 6 literally (raw dot products), which
        collapses to one cluster (see README, "UCCC must not degenerate").
    cluster_temperature: temperature of the cosine variant (unused by ``paper``).
    instance_temperature: tau of the NT-Xent instance loss (paper: 0.5). None (the default): from
        the number of clusters, ``clustering.data_defaults.choose_instance_temperature``: the
        paper's 0.5 up to 40 clusters, 0.5 sqrt(40 / C) above (0.224 at 200), where the positive
        threshold's band is narrow and 0.5 left the classes inside it (README, "UCCC at 10 to 200
        clusters").
    khop: hops of the graph fusion, Eq. 5 (paper: 2).
    tolerance: the tolerant parameter t giving pos_conf = 1 - 2t/C (paper: 4).
    pos_conf: explicit positive threshold; overrides ``tolerance`` when set.
    neg_conf: negative threshold (paper: 0).
    logit_norm: batch-normalise the cluster logits (no learnable scale or shift) before the
        softmax. Not in the paper. Without it a run starts with nearly every image in a few
        clusters and recruits the rest slowly (digits: 10 of 10 only after ~30 epochs); centred
        logits give every cluster a share of the argmaxes from the first step. An architectural
        constraint on the head, not a balance term: the loss stays Eq. 6 (cosine variant). Off by
        default: it wins in 2-minute runs but lost after 5 minutes at 20 and 40 classes (README,
        "logit_norm, and what actually fixed the collapse"); the collapse at 20-40 clusters came
        from the batch and is fixed by the CPU batch rule (``clustering.data_defaults``).
    logit_norm_affine: give that normalisation a learnable per-cluster scale and shift (starts as
        the plain normalisation; training may undo it).
    logit_norm_until: with ``logit_norm``, freeze the normalisation at this share of the run's
        progress (0.5: half its time budget): from then on it is its running statistics, a fixed
        per-cluster scale and shift, so the head starts with every cluster recruited and ends as
        the paper's plain linear softmax head. None: batch-normalised throughout.
    graph: ``threshold`` (Eq. 3-4, the paper) or ``rank``: positive peers are the
        ``pos_fraction`` (default 1/C) most similar views of each view, negative peers the
        ``neg_fraction`` least similar; gives every row the expected community size whatever the
        spread of z (measured: a small gain at 20 and 40 clusters, see README; off by default).
    center: subtract each row's mean over the clusters from Y_pos and Y_neg before the cosine
        (faster start, but on 40 classes it plateaued lower; off by default).
    warmup_steps: optimiser steps with the instance loss alone before the cluster loss joins.
    reseed_empty: DeepCluster's empty-cluster fix (:mod:`clustering.reseed`): a cluster that no
        training image chose over the last epoch's images takes half of the largest cluster (its
        head row, split along the principal direction of its members as bisecting k-means splits).
        Not in the paper; no loss term. On by default: the plain head recruits clusters slowly and
        left 1-5 of 40 empty after 5 minutes (JSD 0.04-0.10 on 40 classes of 10 images); with it
        every run kept 39-40 (JSD 0.016-0.023), level elsewhere (README, "UCCC at 10 to 200
        clusters"). ``reseed_empty=false`` is the paper's method.
    reseed_final: with ``reseed_empty``, when the run finishes (not when it is stopped), re-seed the
        clusters that no image of the whole data set, without augmentation, chooses
        (:func:`clustering.reseed.fill_empty_clusters`), before the final evaluation and checkpoint.
        The re-seeding during training counts an epoch's augmented views, so a cluster that
        emptied in the last epoch ended the run empty: at 100 classes of 20 images, 5-minute runs
        ended with 94-99 of 100 clusters, with it 100 of 100 (README, "Re-seeding at the end").
    reseed_from: with ``reseed_empty``, start counting (and re-seeding) at this share of the run's
        progress, so that the loss recruits clusters on its own first and only the clusters still
        empty then are re-seeded.
    strong_view: add SACC's third view (weak, then RandAugment with ``ra_n`` ops of magnitude up
        to ``ra_m``): instance loss ins(w1, w2) + ins(w2, s) as in SACC, community graphs over all
        3N views, and Eq. 6 averaged over the view pairs (w1, w2), (w1, s), (w2, s). Not in the
        paper. None (the default): from the number of clusters,
        ``clustering.data_defaults.choose_strong_view``: on up to 40 clusters, where in 5-minute
        CPU runs it was ahead or level on every set of the development suite (MNIST-test 0.961
        against 0.913, digits-rot20 0.971 against 0.949, 40 two-digit classes 0.762 against
        0.642-0.698; README, "the development suite") though a step costs 1.5x; off above, where it
        was level or behind at 100 classes and behind at 200 (README, "UCCC at 10 to 200 clusters"),
        and off on a densely sampled set (``clustering.data.closeness``: the turntable 0.95-0.97
        without it against 0.85-0.88 with it; README, "UCCC on a densely sampled set").
        ``strong_view=false`` is the paper's two weak views.
    neighbor_view: take the last view (the strong one, or the second weak view without
        ``strong_view``) of every batch image from a random one of its ``neighbors`` nearest
        neighbours in z, or itself (:mod:`clustering.neighbors`; the table is rebuilt from the
        whole data set's embedding at every epoch's start, as GCC's graph is). The instance loss
        and Eq. 6 then pull neighbours together as they pull views together, so what varies
        between neighbouring images and no augmentation makes (an object's pose, a face's shot)
        is learnt too. Not in the paper (SCAN's and GCC's neighbour positives). On by default, from
        ``neighbor_from`` = 0.3 of the run: in 5-minute CPU runs it was ahead or level on every set
        of the development suite, over three seeds (40 two-digit classes 0.848 against 0.773, 40
        subjects 0.995 against 0.981, 20 objects in 72 poses 0.690 against 0.642, MNIST-test 0.967
        against 0.964; README, "UCCC's neighbour view").
        ``neighbor_view=false`` is the paper's views.
    neighbors: k of that nearest-neighbour table.
    neighbor_from: with ``neighbor_view``, take the last view from a neighbour only from this share
        of the run's progress on (before it, the plain views; the table is built when it starts):
        an early embedding's "neighbours" are often of another class. From the start (0.0) it was
        level with the plain views over three seeds, ahead on one and behind on the next.
    neighbor_weak: with ``neighbor_view`` and ``strong_view``, the second weak view comes from the
        same neighbour as the strong one (GCC's pairing: an image's weak view against its
        neighbour's), so ins(w1, w2) pulls neighbours together on weak views and ins(w2, s) is an
        instance pair of the neighbour. Off by default: with ``neighbor_from`` = 0 it gained 0.03
        on the 20-object turntable over three seeds but lost 0.11 on 40 two-digit classes of 10
        images over two (README, "Where UCCC stops on the turntable").
    instance_positives: ``views`` (the paper): NT-Xent, an anchor's one positive is its partner
        view. ``neighbors``: while the neighbour view is on (from ``neighbor_from``), both instance
        terms are multi-positive NT-Xent (SupCon's form, :mod:`clustering.losses.multi_positive`):
        every view in the batch whose source image is the anchor's own or one of its table
        neighbours (or has the anchor's among its own) is a positive, as GCC's graph positives
        are. Needs ``neighbor_view``.
    detach_head_input: the cluster head reads the backbone features h without gradient, so Eq. 6
        (and ``cc_weight``'s loss) train the cluster head only and the representation learns from
        the instance loss alone. Not in the paper, which trains the whole network on both losses
        (its gradient analysis, Eq. 10, is of the classifier weights with the features fixed).
        None (the default): from the data, ``clustering.data_defaults.choose_detach_head_input``:
        on below 100 images per cluster, where the cluster loss's gradient had evened the classes in
        h too (the long-tailed digits 0.846 / 0.846 against 0.759 / 0.692 with it, 100 two-digit
        classes 0.914 against 0.818, the turntable 0.853 against 0.820; README, "Eq. 6 out of the
        backbone"); off from 100 up, where the two were level (MNIST-test 0.948 / 0.963 against
        0.964 / 0.959, digits 0.959 against 0.957-0.962).
    cc_weight: weight of CC's cluster loss (``clustering.losses.cc_cluster_loss``: NT-Xent over
        the clusters' columns of two views' probabilities, plus its balance term log C - H) added
        to Eq. 6 on each of the same view pairs, as SACC sums it. Not in the paper; 0 (the paper's
        loss) by default. Its balance term pulls every cluster towards N / C images: on balanced
        data with many images a cluster it frees the minority styles Eq. 6 leaves in a neighbouring
        cluster (digits 0.990-0.994 against 0.96), but where the classes differ in size it splits
        the largest class and merges small ones (MNIST at the USPS class proportions, three
        seeds: 0.794-0.815 against 0.872-0.961 without it), and it cost 0.04-0.17 at 10-72 images
        a cluster (README, "Class sizes"). 1 is for data known to be balanced; ``cc_if_balanced``
        decides it from the run.
    cc_if_balanced: with ``cc_weight`` 0, add CC's cluster loss (weight 1) from the first epoch
        between ``cc_from`` and ``cc_until`` of the run at which the head's partition of the whole
        data set has been balanced at two epoch starts in a row (largest cluster at most 1.3 times
        the mean; :mod:`clustering.methods.balance_switch`). Eq. 6 alone keeps class-size
        differences in its partition, so this tells balanced data, where the loss frees the
        minority styles, from unbalanced, where its balance term would split the largest class.
        Logged as ``largest_over_mean`` and ``cc_on``. Not in the paper. None (the default): from
        the data, ``clustering.data_defaults.choose_cc_if_balanced``: on from 100 images per cluster
        (README, "CC's cluster loss where the clusters are balanced").
    cc_from, cc_until: the share of the run's progress in which ``cc_if_balanced`` looks.
    """

    variant: Literal["cosine", "paper"] = "cosine"
    cluster_temperature: float = 0.3
    instance_temperature: float | None = None
    khop: int = 2
    tolerance: float = 4.0
    pos_conf: float | None = None
    neg_conf: float = 0.0
    logit_norm: bool = False
    logit_norm_affine: bool = False
    logit_norm_until: float | None = None
    graph: Literal["threshold", "rank"] = "threshold"
    pos_fraction: float | None = None
    neg_fraction: float = 0.5
    center: bool = False
    warmup_steps: int = 0
    reseed_empty: bool = True
    reseed_from: float = 0.0
    reseed_final: bool = True
    strong_view: bool | None = None
    ra_n: int = 5
    ra_m: int = 10
    neighbor_view: bool = True
    neighbors: int = 5
    neighbor_from: float = 0.3
    neighbor_weak: bool = False
    instance_positives: Literal["views", "neighbors"] = "views"
    cc_weight: float = 0.0
    detach_head_input: bool | None = None
    cc_if_balanced: bool | None = None
    cc_from: float = 0.25
    cc_until: float = 0.75
    #: What runs saved before a parameter existed were trained with (``load_run_config``).
    VALUE_BEFORE_ADDED: ClassVar[dict[str, Any]] = {"strong_view": False, "reseed_empty": False,
                                                    "neighbor_view": False, "neighbor_from": 0.0,
                                                    "reseed_final": False, "detach_head_input": False,
                                                    "cc_if_balanced": False}

    def validate(self) -> None:
        if self.khop < 1:
            raise ValueError(f"khop must be >= 1, got {self.khop}")
        if self.cluster_temperature <= 0 or (self.instance_temperature is not None and self.instance_temperature <= 0):
            raise ValueError("temperatures must be > 0")
        if self.pos_conf is not None and not -1.0 < self.pos_conf < 1.0:
            raise ValueError(f"pos_conf must be in (-1, 1), got {self.pos_conf}")
        if self.tolerance <= 0:
            raise ValueError(f"tolerance must be > 0, got {self.tolerance}")
        if self.pos_fraction is not None and not 0.0 < self.pos_fraction <= 1.0:
            raise ValueError(f"pos_fraction must be in (0, 1], got {self.pos_fraction}")
        if not 0.0 < self.neg_fraction < 1.0:
            raise ValueError(f"neg_fraction must be in (0, 1), got {self.neg_fraction}")
        if not 0.0 <= self.neighbor_from < 1.0:
            raise ValueError(f"neighbor_from must be in [0, 1), got {self.neighbor_from}")
        if not 0.0 <= self.reseed_from < 1.0:
            raise ValueError(f"reseed_from must be in [0, 1), got {self.reseed_from}")
        if self.logit_norm_until is not None and not 0.0 < self.logit_norm_until <= 1.0:
            raise ValueError(f"logit_norm_until must be in (0, 1], got {self.logit_norm_until}")
        if self.neighbors < 1:
            raise ValueError(f"neighbors must be >= 1, got {self.neighbors}")
        if self.instance_positives == "neighbors" and not self.neighbor_view:
            raise ValueError("instance_positives=neighbors needs neighbor_view=true (its table gives the positives)")
        if not 0.0 <= self.cc_from <= self.cc_until <= 1.0:
            raise ValueError(f"need 0 <= cc_from <= cc_until <= 1, got {self.cc_from} and {self.cc_until}")
        if self.cc_weight < 0:
            raise ValueError(f"cc_weight must be >= 0, got {self.cc_weight}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    def threshold(self, num_clusters: int) -> float:
        return self.pos_conf if self.pos_conf is not None else positive_threshold(num_clusters, self.tolerance)


class FreezingLogitNorm(nn.Module):
    """Batch-normalised cluster logits until :meth:`freeze`, then the same normalisation with its
    running statistics fixed: a constant per-cluster scale and shift, so the head is from then on
    a plain linear softmax head (the normalisation folded into the last layer). A buffer records
    the freeze, so checkpoints and resumed runs keep it."""

    def __init__(self, num_clusters: int, affine: bool = False) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(num_clusters, affine=affine)
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))

    def freeze(self) -> None:
        self.frozen.fill_(True)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if not bool(self.frozen):
            return self.norm(logits)
        n = self.norm
        return F.batch_norm(logits, n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps)


@register_method
class UCCC(ClusterMethod):
    name = "uccc"
    description = "instance NT-Xent + community-consensus cluster loss over k-hop positive/negative graphs"
    Params = UCCCParams
    # on the CNN the rate settles over the last 20% of the run: MNIST-test in 20 minutes ended at
    # 0.983 / 0.983 / 0.985, where a constant rate leaves the last epochs between 0.975 and 0.986 (README)
    train_defaults = paper_adam_defaults(cnn_scheduler="cosine-tail", batch_size_per_10_clusters=256)
    sample_buffers = ("neighbor_table",)  # with ``neighbor_view`` only
    # instance_temperature and strong_view from the number of clusters, detach_head_input and
    # cc_if_balanced from the images per cluster
    param_rules = {"instance_temperature": choose_instance_temperature, "strong_view": choose_strong_view,
                   "detach_head_input": choose_detach_head_input, "cc_if_balanced": choose_cc_if_balanced}

    def __init__(self, model: ClusterModel, params: UCCCParams, num_samples: int) -> None:
        super().__init__()
        require_images(model, self.name)
        self.model = model
        self.params = params
        self.pos_conf = params.threshold(model.num_clusters)
        c = model.num_clusters
        self.instance_temperature = set_or_rule(params.instance_temperature, instance_contrast_temperature, c)
        self.strong_view = set_or_rule(params.strong_view, uccc_strong_view, c)
        if params.logit_norm and params.logit_norm_until is not None:
            model.cluster_head.append(FreezingLogitNorm(model.num_clusters, affine=params.logit_norm_affine))
        elif params.logit_norm:
            # The normalisation removes any per-cluster offset, so the last layer's bias would get
            # exactly zero gradient: drop it rather than carry a dead parameter.
            model.cluster_head[-1].register_parameter("bias", None)
            model.cluster_head.append(nn.BatchNorm1d(model.num_clusters, affine=params.logit_norm_affine))
        set_detach_head_input(model, params.detach_head_input, num_samples)
        per_cluster = num_samples / c
        self.reseeder = maybe_reseeder(params.reseed_empty, model.cluster_head, num_samples)
        cc_check = (params.cc_if_balanced if params.cc_if_balanced is not None
                    else uccc_cc_if_balanced(per_cluster)) and not params.cc_weight  # fmt: skip
        # A module only with the check, so checkpoints of runs without it keep their keys.
        self.balance_switch = BalanceSwitch(params.cc_from, params.cc_until) if cc_check else None
        if params.neighbor_view:
            if num_samples <= params.neighbors:
                raise ValueError(f"neighbor_view needs more samples ({num_samples}) than neighbors "
                                 f"({params.neighbors})")  # fmt: skip
            # Buffers only with the option, so checkpoints of runs without it keep their keys.
            self.register_buffer("neighbor_table", torch.zeros(num_samples, params.neighbors, dtype=torch.long))
            self.register_buffer("neighbors_ready", torch.tensor(False))

    @torch.no_grad()
    def update_neighbors(self, z: torch.Tensor) -> None:
        """Rebuild the nearest-neighbour table from the whole data set's embedding ``z`` (N, d)."""
        self.neighbor_table.copy_(knn_indices(z.to(self.neighbor_table.device), self.params.neighbors))
        self.neighbors_ready.fill_(True)

    def on_epoch_start(self, context: EpochContext) -> None:
        # From ``neighbor_from`` on (the first such step builds the table, marking it ready; a
        # checkpoint keeps the mark, so a resumed run rebuilds at the same epochs).
        p = self.params
        if self.balance_switch is not None and self.balance_switch.due(context.progress):
            self.balance_switch.maybe_check(context.progress, np.asarray(context.embed()["probs"]))
        if p.neighbor_view and (p.neighbor_from == 0.0 or bool(self.neighbors_ready)):
            self.update_neighbors(torch.from_numpy(np.asarray(context.embed()["z"])))

    def on_train_end(self, context: EpochContext) -> dict[str, float]:
        return reseed_at_end(self.reseeder, self.params.reseed_final, self.model.cluster_head, context.embed)

    def _neighbor_inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Data-set indices and raw inputs of one random neighbour (or the image itself) of every
        batch image."""
        if batch.dataset_inputs is None:
            raise ConfigError("UCCC's neighbor_view needs Batch.dataset_inputs (the trainer fills it)")
        if not bool(self.neighbors_ready):  # the trainer builds it in on_epoch_start; other callers get it here
            z = embed_all(self.model, batch.dataset_inputs, batch.inputs.device)["z"]
            self.update_neighbors(torch.from_numpy(z))
        picked = draw_neighbors(self.neighbor_table, batch.indices, batch.generator)
        return picked, fetch(batch.dataset_inputs, picked, batch.inputs, self.name)

    def _instance_loss(self, z: list[torch.Tensor], sources: list[torch.Tensor] | None, a: int, b: int
                       ) -> torch.Tensor:  # fmt: skip
        """ins(view a, view b): NT-Xent, or with ``sources`` (each view's source images over the
        global batch) the multi-positive loss over the neighbour table's links."""
        tau = self.instance_temperature
        if sources is None:
            return nt_xent(z[a], z[b], tau)
        positives = neighbor_positives(torch.cat([sources[a], sources[b]]), self.neighbor_table)
        return multi_positive_nt_xent(torch.cat([z[a], z[b]]), positives, tau)

    def training_step(self, batch: Batch) -> StepOutput:
        p = self.params
        reseeding = self.reseeder is not None and batch.progress >= p.reseed_from
        if reseeding:
            self.reseeder.step(self.model.cluster_head)  # before the forward: it edits the head in place
        head_norm = self.model.cluster_head[-1]
        if isinstance(head_norm, FreezingLogitNorm) and batch.progress >= (p.logit_norm_until or 1.0):
            head_norm.freeze()
        x = batch.inputs
        neighbors = p.neighbor_view and batch.progress >= p.neighbor_from
        last_ids, last = self._neighbor_inputs(batch) if neighbors else (batch.indices, x)  # the last view's source
        second_weak_own = self.strong_view and not p.neighbor_weak
        second = x if second_weak_own else last  # and the second weak one's
        inputs = [batch.views.weak(x), batch.views.weak(second)]
        if self.strong_view:
            inputs.append(batch.views.strong(last, n=p.ra_n, m=p.ra_m))
        out = self.model(torch.cat(inputs))
        # Under DDP the negatives and the community graphs span the global batch: gather each view
        # separately so the rows stay [view 1 (N); view 2 (N); ...] (the identity in one process).
        z = batch.gather_views(out.z, len(inputs))
        probs = batch.gather_views(out.probs, len(inputs))
        if reseeding:
            self.reseeder.observe(probs[0].detach(), batch.first_view_rows(out.h), self.model.cluster_head)
        sources = None  # each view's source images, for the neighbour positives
        if neighbors and p.instance_positives == "neighbors":
            own, last_src = batch.gather(batch.indices), batch.gather(last_ids.to(batch.indices.device))
            sources = [own, own if second_weak_own else last_src] + ([last_src] if self.strong_view else [])
        loss_ins = self._instance_loss(z, sources, 0, 1)
        if self.strong_view:
            loss_ins = loss_ins + self._instance_loss(z, sources, 1, 2)
        z_all, probs_all = torch.cat(z), torch.cat(probs)
        graphs = None
        if p.graph == "rank":
            graphs = rank_graphs(z_all, p.pos_fraction or 1.0 / self.model.num_clusters, p.neg_fraction)
        y_pos, y_neg = community_assignments(z_all, probs_all, self.pos_conf, p.neg_conf, p.khop, graphs=graphs)
        cosine = p.variant == "cosine"
        m = z[0].shape[0]  # the global batch

        def rows(y: torch.Tensor, a: int, b: int) -> torch.Tensor:  # [view a; view b]
            return torch.cat([y[a * m : (a + 1) * m], y[b * m : (b + 1) * m]])

        pairs = [(0, 1), (0, 2), (1, 2)] if self.strong_view else [(0, 1)]
        loss_clu = sum(
            uccc_cluster_loss(rows(y_pos, a, b), rows(y_neg, a, b), cosine=cosine,
                              temperature=p.cluster_temperature if cosine else 1.0, center=p.center)
            for a, b in pairs
        ) / len(pairs)  # fmt: skip
        weight = 1.0 if batch.step >= p.warmup_steps else 0.0
        parts = {"loss_ins": loss_ins, "loss_clu": loss_clu}
        loss = loss_ins + weight * loss_clu
        switch = self.balance_switch
        cc_weight = p.cc_weight or (1.0 if switch is not None and switch.balanced else 0.0)
        if cc_weight:  # CC's cluster loss (column contrast and balance term) on the same view pairs
            parts["loss_cc"] = sum(cc_cluster_loss(probs[a], probs[b], 1.0) for a, b in pairs)
            loss = loss + weight * cc_weight * parts["loss_cc"]
        if switch is not None:
            parts |= switch.parts()
        if self.reseeder is not None:
            parts["reseeds"] = self.reseeder.reseeds.float()  # clusters re-seeded so far in the run
        return StepOutput(loss=loss, parts=parts)
