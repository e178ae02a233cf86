"""Losses, one module each, pure functions of tensors with shape-documented docstrings."""

from clustering.losses.assignment_contrastive import assignment_contrastive_loss
from clustering.losses.balance import balance_loss
from clustering.losses.cc_cluster import cc_cluster_loss
from clustering.losses.graph_contrastive import graph_contrastive_loss
from clustering.losses.multi_positive import multi_positive_nt_xent, neighbor_positives
from clustering.losses.nt_xent import nt_xent
from clustering.losses.self_training import self_training_loss, target_distribution
from clustering.losses.soft_contrastive import soft_contrastive_loss
from clustering.losses.uccc_cluster import uccc_cluster_loss

__all__ = ["nt_xent", "uccc_cluster_loss"]
__all__ += [
    "assignment_contrastive_loss", "balance_loss", "cc_cluster_loss", "graph_contrastive_loss",
    "multi_positive_nt_xent", "neighbor_positives",
    "self_training_loss", "soft_contrastive_loss", "target_distribution",
]  # fmt: skip
