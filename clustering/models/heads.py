"""Projection heads and the clustering model that wraps backbone + heads + input normalisation."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


def mlp_head(in_dim: int, out_dim: int, hidden: int | None = None) -> nn.Sequential:
    """The papers' two-layer projection head: Linear-ReLU-Linear."""
    hidden = hidden or in_dim
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


class Outputs(NamedTuple):
    h: Tensor  # (B, F) backbone features
    z: Tensor  # (B, instance_dim) instance embeddings (not normalised)
    logits: Tensor  # (B, C) cluster logits
    probs: Tensor  # (B, C) softmax cluster probabilities


class ClusterModel(nn.Module):
    """f (backbone) + g_I (instance head) + g_C (cluster head), with the input normalisation
    stored as buffers so that a checkpoint alone can embed new images."""

    def __init__(
        self,
        backbone: nn.Module,
        num_clusters: int,
        instance_dim: int = 128,
        input_mean: Tensor | None = None,
        input_std: Tensor | None = None,
    ) -> None:
        super().__init__()
        if num_clusters < 2:
            raise ValueError(f"num_clusters must be >= 2, got {num_clusters}")
        feature_dim = int(backbone.out_dim)
        self.backbone = backbone
        self.instance_head = mlp_head(feature_dim, instance_dim)
        self.cluster_head = mlp_head(feature_dim, num_clusters)
        self.num_clusters = num_clusters
        # The cluster head reads the features without gradient: the cluster loss trains the head
        # only and the backbone learns from the instance loss (``detach_head_input`` of UCCC, CC, SACC).
        self.detach_cluster_input = False
        self.register_buffer("input_mean", torch.zeros(1) if input_mean is None else input_mean.float())
        self.register_buffer("input_std", torch.ones(1) if input_std is None else input_std.float())

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.input_mean) / self.input_std

    def forward(self, x: Tensor) -> Outputs:
        h = self.backbone(self.normalize(x))
        # The cluster head in float32 under autocast (it is two small matmuls): its argmax is the
        # clustering, and in bfloat16 (8 bits of mantissa) images near a boundary between two
        # clusters chose differently from the float32 head that re-seeding computes with, so a
        # cluster re-seeded at the end could be empty in the run's last evaluation.
        with torch.autocast(h.device.type, enabled=False):
            logits = self.cluster_head((h.detach() if self.detach_cluster_input else h).float())
        return Outputs(h=h, z=self.instance_head(h), logits=logits, probs=logits.softmax(dim=1))
