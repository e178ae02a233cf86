"""LNSCC's soft contrastive pair loss (``papers/lnscc.txt`` Eq. 4, 9, 13, 17)."""

from __future__ import annotations

import torch
from torch import Tensor

REPULSIONS = ("log", "bounded")


def soft_contrastive_loss(z_i: Tensor, z_j: Tensor, attract: Tensor, reduction: str = "mean",
                          eps: float = 1e-6, repulsion: str = "log") -> Tensor:  # fmt: skip
    """Attract or repel sample pairs through ``O_ij = exp(-d(Z_i, Z_j))`` (Eq. 4).

    An attracting pair (from E^{im+} or E^{ba}) costs ``-log O_ij = d_ij``; a repelling pair
    (from E^{im-} or E^{dis}) costs ``-log(1 - O_ij)`` (Eq. 9, 13, 17). d is the Euclidean
    distance, kept >= ``eps`` so that a repelling pair at distance 0 costs -log(1 - e^-eps)
    (about 13.8) instead of infinity.

    ``repulsion="bounded"`` (not in the paper) repels with ``-log(1 - O_ij / 2)`` instead: at most
    log 2 and a gradient of at most 1 in d, where the paper's term costs up to 13.8 and pushes
    with about 1/d near 0, so a repelled pair that happens to be two neighbours of one class (most
    of E^{im-}) no longer dominates the step. Far apart the two agree up to a factor 1/2.

    Args:
        z_i: (P, d) embeddings of the pairs' first samples.
        z_j: (P, d) embeddings of the pairs' second samples.
        attract: (P,) bool, True for attracting pairs, False for repelling ones.
        reduction: ``mean`` (over the P pairs; the paper sums, which only rescales the step),
            ``sum`` or ``none`` (the (P,) per-pair costs).
        repulsion: ``log`` (the paper) or ``bounded``.

    Returns:
        Scalar, or (P,) with ``reduction="none"``.
    """
    if z_i.shape != z_j.shape or z_i.dim() != 2:
        raise ValueError(f"z_i and z_j must both be (P, d); got {tuple(z_i.shape)}, {tuple(z_j.shape)}")
    if attract.shape != z_i.shape[:1]:
        raise ValueError(f"attract must be (P,) = ({z_i.shape[0]},), got {tuple(attract.shape)}")
    diff = z_i.float() - z_j.float()
    d = (diff.pow(2).sum(dim=1) + eps**2).sqrt()  # smooth at 0, and d >= eps
    if repulsion == "log":
        repel = -torch.log(-torch.expm1(-d))  # -log(1 - e^-d), accurate for small d
    elif repulsion == "bounded":
        repel = -torch.log1p(-0.5 * torch.exp(-d))  # -log(1 - e^-d / 2)
    else:
        raise ValueError(f"unknown repulsion {repulsion!r}; valid: {', '.join(REPULSIONS)}")
    costs = torch.where(attract, d, repel)
    if reduction == "none":
        return costs
    if reduction == "sum":
        return costs.sum()
    if reduction == "mean":
        return costs.mean() if costs.numel() else costs.sum()
    raise ValueError(f"reduction must be mean, sum or none; got {reduction!r}")
