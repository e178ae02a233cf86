"""UCCC: Unsupervised Community-consensus Contrastive Clustering (``papers/uccc.txt``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from clustering.graph import community_assignments, positive_threshold, rank_graphs
from clustering.losses import nt_xent, uccc_cluster_loss
from clustering.methods.common import paper_adam_defaults, require_images
from clustering.methods.registry import Batch, ClusterMethod, StepOutput, register_method
from clustering.models import ClusterModel


@dataclass
class UCCCParams:
    """UCCC hyperparameters.

    variant: ``cosine`` (default) measures the agreements of Eq. 6 by cosine similarity divided
        by ``cluster_temperature``; ``paper`` is Eq. 6 literally (raw dot products), which
        collapses to one cluster (see README, "UCCC must not degenerate").
    cluster_temperature: temperature of the cosine variant (unused by ``paper``).
    instance_temperature: tau of the NT-Xent instance loss (paper: 0.5).
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
    graph: ``threshold`` (Eq. 3-4, the paper) or ``rank``: positive peers are the
        ``pos_fraction`` (default 1/C) most similar views of each view, negative peers the
        ``neg_fraction`` least similar; gives every row the expected community size whatever the
        spread of z (measured: a small gain at 20 and 40 clusters, see README; off by default).
    center: subtract each row's mean over the clusters from Y_pos and Y_neg before the cosine
        (faster start, but on 40 classes it plateaued lower; off by default).
    warmup_steps: optimiser steps with the instance loss alone before the cluster loss joins.
    strong_view: add SACC's third view (weak, then RandAugment with ``ra_n`` ops of magnitude up
        to ``ra_m``): instance loss ins(w1, w2) + ins(w2, s) as in SACC, community graphs over all
        3N views, and Eq. 6 averaged over the view pairs (w1, w2), (w1, s), (w2, s). Not in the
        paper; on by default: in 5-minute CPU runs it was ahead or level on every set of the
        development suite (MNIST-test 0.961 against 0.913, digits-rot20 0.971 against 0.949, 40
        two-digit classes 0.762 against 0.642-0.698; README, "the development suite"), though a
        step costs 1.5x. ``strong_view=false`` is the paper's two weak views.
    """

    variant: Literal["cosine", "paper"] = "cosine"
    cluster_temperature: float = 0.3
    instance_temperature: float = 0.5
    khop: int = 2
    tolerance: float = 4.0
    pos_conf: float | None = None
    neg_conf: float = 0.0
    logit_norm: bool = False
    logit_norm_affine: bool = False
    graph: Literal["threshold", "rank"] = "threshold"
    pos_fraction: float | None = None
    neg_fraction: float = 0.5
    center: bool = False
    warmup_steps: int = 0
    strong_view: bool = True
    ra_n: int = 5
    ra_m: int = 10

    def validate(self) -> None:
        if self.khop < 1:
            raise ValueError(f"khop must be >= 1, got {self.khop}")
        if self.cluster_temperature <= 0 or self.instance_temperature <= 0:
            raise ValueError("temperatures must be > 0")
        if self.pos_conf is not None and not -1.0 < self.pos_conf < 1.0:
            raise ValueError(f"pos_conf must be in (-1, 1), got {self.pos_conf}")
        if self.tolerance <= 0:
            raise ValueError(f"tolerance must be > 0, got {self.tolerance}")
        if self.pos_fraction is not None and not 0.0 < self.pos_fraction <= 1.0:
            raise ValueError(f"pos_fraction must be in (0, 1], got {self.pos_fraction}")
        if not 0.0 < self.neg_fraction < 1.0:
            raise ValueError(f"neg_fraction must be in (0, 1), got {self.neg_fraction}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    def threshold(self, num_clusters: int) -> float:
        return self.pos_conf if self.pos_conf is not None else positive_threshold(num_clusters, self.tolerance)


@register_method
class UCCC(ClusterMethod):
    name = "uccc"
    description = "instance NT-Xent + community-consensus cluster loss over k-hop positive/negative graphs"
    Params = UCCCParams
    train_defaults = paper_adam_defaults(batch_size_per_10_clusters=256)

    def __init__(self, model: ClusterModel, params: UCCCParams, num_samples: int) -> None:
        super().__init__()
        require_images(model, self.name)
        self.model = model
        self.params = params
        self.pos_conf = params.threshold(model.num_clusters)
        if params.logit_norm:
            # The normalisation removes any per-cluster offset, so the last layer's bias would get
            # exactly zero gradient: drop it rather than carry a dead parameter.
            model.cluster_head[-1].register_parameter("bias", None)
            model.cluster_head.append(nn.BatchNorm1d(model.num_clusters, affine=params.logit_norm_affine))

    def training_step(self, batch: Batch) -> StepOutput:
        p = self.params
        x = batch.inputs
        inputs = [batch.views.weak(x), batch.views.weak(x)]
        if p.strong_view:
            inputs.append(batch.views.strong(x, n=p.ra_n, m=p.ra_m))
        out = self.model(torch.cat(inputs))
        # Under DDP the negatives and the community graphs span the global batch: gather each view
        # separately so the rows stay [view 1 (N); view 2 (N); ...] (the identity in one process).
        z = batch.gather_views(out.z, len(inputs))
        probs = batch.gather_views(out.probs, len(inputs))
        loss_ins = nt_xent(z[0], z[1], p.instance_temperature)
        if p.strong_view:
            loss_ins = loss_ins + nt_xent(z[1], z[2], p.instance_temperature)
        z_all, probs_all = torch.cat(z), torch.cat(probs)
        graphs = None
        if p.graph == "rank":
            graphs = rank_graphs(z_all, p.pos_fraction or 1.0 / self.model.num_clusters, p.neg_fraction)
        y_pos, y_neg = community_assignments(z_all, probs_all, self.pos_conf, p.neg_conf, p.khop, graphs=graphs)
        cosine = p.variant == "cosine"
        m = z[0].shape[0]  # the global batch

        def rows(y: torch.Tensor, a: int, b: int) -> torch.Tensor:  # [view a; view b]
            return torch.cat([y[a * m : (a + 1) * m], y[b * m : (b + 1) * m]])

        pairs = [(0, 1), (0, 2), (1, 2)] if p.strong_view else [(0, 1)]
        loss_clu = sum(
            uccc_cluster_loss(rows(y_pos, a, b), rows(y_neg, a, b), cosine=cosine,
                              temperature=p.cluster_temperature if cosine else 1.0, center=p.center)
            for a, b in pairs
        ) / len(pairs)  # fmt: skip
        weight = 1.0 if batch.step >= p.warmup_steps else 0.0
        return StepOutput(loss=loss_ins + weight * loss_clu, parts={"loss_ins": loss_ins, "loss_clu": loss_clu})
