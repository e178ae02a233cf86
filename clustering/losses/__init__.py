"""Losses, one module each, pure functions of tensors with shape-documented docstrings."""

from clustering.losses.nt_xent import nt_xent
from clustering.losses.uccc_cluster import uccc_cluster_loss

__all__ = ["nt_xent", "uccc_cluster_loss"]
