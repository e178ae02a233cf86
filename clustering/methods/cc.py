"""CC: Contrastive Clustering (``papers/cc.txt``), instance- and cluster-level contrast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from clustering.data_defaults import (
    choose_detach_head_input,
    choose_instance_temperature,
    instance_contrast_temperature,
)
from clustering.losses import balance_loss, cc_cluster_loss, nt_xent
from clustering.methods.common import paper_adam_defaults, require_images, set_detach_head_input, set_or_rule
from clustering.methods.registry import Batch, ClusterMethod, EpochContext, StepOutput, register_method
from clustering.models import ClusterModel
from clustering.reseed import maybe_reseeder, reseed_at_end


@dataclass
class CCParams:
    """CC hyperparameters (paper defaults).

    instance_temperature: tau_I of the instance NT-Xent (Eq. 2; paper 0.5). None (the default): from
        the number of clusters, ``clustering.data_defaults.choose_instance_temperature``: 0.5 up to 40
        clusters, 0.5 sqrt(40 / C) above (0.224 at 200, where 0.5 left the classes mixed in z; README).
    cluster_temperature: tau_C of the cluster-level NT-Xent (Eq. 5).
    entropy: add log C - H(p) for each view (Eq. 6); off reproduces "CC without its entropy
        term", which the UCCC paper (Fig. 3) shows degenerating.
    reseed_empty: re-seed clusters that stay empty (:mod:`clustering.reseed`); not in the paper.
    reseed_final: with ``reseed_empty``, re-seed the clusters still empty on the whole data set when
        the run finishes (as UCCC's ``reseed_final``).
    detach_head_input: the cluster head reads the backbone features h without gradient, so the
        cluster loss trains the head only and the backbone learns from the instance loss; not in the
        paper. None (the default): from the data, as UCCC's
        (``clustering.data_defaults.choose_detach_head_input``): on below 100 images per cluster,
        where the cluster loss's uniform prior shaped h after its evened, few-image clusters
        (README, "CC and SACC: the cluster loss out of the backbone"); off from 100 up.
    """

    instance_temperature: float | None = None
    cluster_temperature: float = 1.0
    entropy: bool = True
    reseed_empty: bool = False
    reseed_final: bool = True
    detach_head_input: bool | None = None
    #: What runs saved before a parameter existed were trained with (``load_run_config``).
    VALUE_BEFORE_ADDED: ClassVar[dict[str, Any]] = {"detach_head_input": False, "reseed_final": False}

    def validate(self) -> None:
        if (self.instance_temperature is not None and self.instance_temperature <= 0) or self.cluster_temperature <= 0:
            raise ValueError("temperatures must be > 0")


@register_method
class CC(ClusterMethod):
    """Two weak views; L = NT-Xent(z_a, z_b) + cluster NT-Xent(columns of p_a, p_b) + entropy.

    Training defaults are the paper's (Adam 3e-4, no weight decay, no scheduler, batch 256), with 1e-3
    on the small CPU CNN (see ``paper_adam_defaults``).
    """

    name = "cc"
    description = "instance NT-Xent + cluster-level NT-Xent over probability columns + log C - H per view"
    Params = CCParams
    train_defaults = paper_adam_defaults(batch_size=256)
    column_contrast = True  # its cluster-level NT-Xent over the batch's columns
    uniform_prior = True  # log C - H(p) in its cluster loss
    param_rules = {"instance_temperature": choose_instance_temperature,
                   "detach_head_input": choose_detach_head_input}  # fmt: skip

    def __init__(self, model: ClusterModel, params: CCParams, num_samples: int) -> None:
        super().__init__()
        require_images(model, self.name)
        self.model = model
        self.params = params
        c = model.num_clusters
        self.instance_temperature = set_or_rule(params.instance_temperature, instance_contrast_temperature, c)
        self.reseeder = maybe_reseeder(params.reseed_empty, model.cluster_head, num_samples)
        set_detach_head_input(model, params.detach_head_input, num_samples)

    def on_train_end(self, context: EpochContext) -> dict[str, float]:
        return reseed_at_end(self.reseeder, self.params.reseed_final, self.model.cluster_head, context.embed)

    def training_step(self, batch: Batch) -> StepOutput:
        p = self.params
        if self.reseeder is not None:
            self.reseeder.step(self.model.cluster_head)
        views = torch.cat([batch.views.weak(batch.inputs), batch.views.weak(batch.inputs)])
        out = self.model(views)
        # Under DDP the negatives, the probability columns and the entropy span the global batch:
        # gather each view separately (rows stay in sample order); the identity in one process.
        p_a, p_b = batch.gather_views(out.probs, 2)
        if self.reseeder is not None:
            self.reseeder.observe(p_a.detach(), batch.first_view_rows(out.h), self.model.cluster_head)
        loss_ins = nt_xent(*batch.gather_views(out.z, 2), self.instance_temperature)
        loss_clu = cc_cluster_loss(p_a, p_b, p.cluster_temperature, entropy=p.entropy)
        with torch.no_grad():  # logged whether or not it is optimised: shows a collapse coming
            balance = balance_loss(p_a) + balance_loss(p_b)
        parts = {"loss_ins": loss_ins, "loss_clu": loss_clu, "balance": balance}
        return StepOutput(loss=loss_ins + loss_clu, parts=parts)
