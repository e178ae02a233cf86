"""Multi-positive NT-Xent (SupCon's form, Khosla et al. 2020, Eq. 2 "out"), for graph positives.

UCCC's ``instance_positives="neighbors"`` uses it: beside an image's other view, the views of its
nearest neighbours in the batch count as positives, as GCC's graph positives do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def multi_positive_nt_xent(z: Tensor, positives: Tensor, temperature: float = 0.5) -> Tensor:
    """NT-Xent with any number of positives per anchor, averaged over each anchor's positives.

    For the M rows of ``z`` (L2-normalised inside) and the set P(i) of row i's positives,

        l_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip / tau) / sum_{j != i} exp(s_ij / tau) )

    The denominator sums every other row, positives included (as :func:`nt_xent`). With one
    positive per anchor, its other view, this is :func:`nt_xent` exactly.

    Args:
        z: (M, d) embeddings of M views.
        positives: (M, M) boolean, True where row j is a positive of anchor i; the diagonal is
            ignored. Need not be symmetric.
        temperature: tau > 0.

    Returns:
        Scalar: the mean of l_i over the anchors with at least one positive (0 with a gradient
        path when no anchor has one).
    """
    if z.dim() != 2 or positives.shape != (z.shape[0], z.shape[0]):
        raise ValueError(f"z must be (M, d) and positives (M, M); got {tuple(z.shape)}, {tuple(positives.shape)}")
    if positives.dtype != torch.bool:
        raise ValueError(f"positives must be a boolean mask, got {positives.dtype}")
    if z.shape[0] < 2:
        raise ValueError("multi-positive NT-Xent needs at least 2 rows")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    m = z.shape[0]
    zn = F.normalize(z.float(), dim=1)
    self_mask = torch.eye(m, dtype=torch.bool, device=z.device)
    logits = (zn @ zn.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = positives.to(z.device) & ~self_mask
    count = pos.sum(dim=1)
    valid = count > 0
    if not valid.any():
        return zn.sum() * 0.0
    # where(), not a product: log_prob is -inf on the diagonal, and 0 * -inf would be NaN.
    per_anchor = torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    return -(per_anchor[valid] / count[valid]).mean()


def neighbor_positives(sources: Tensor, table: Tensor) -> Tensor:
    """Which views are positives of which, from the images they were made from.

    Views i and j are positives when their source images are the same, or one is among the
    other's nearest neighbours in ``table``.

    Args:
        sources: (M,) data-set index of each view's source image.
        table: (N, k) nearest-neighbour indices of every data-set image.

    Returns:
        (M, M) boolean, symmetric, True on the diagonal.
    """
    if sources.dim() != 1 or table.dim() != 2:
        raise ValueError(f"sources must be (M,) and table (N, k); got {tuple(sources.shape)}, {tuple(table.shape)}")
    src = sources.to(table.device)
    same = src[:, None] == src[None, :]
    rows = table[src]  # (M, k): the neighbours of each view's source
    linked = (rows[:, None, :] == src[None, :, None]).any(dim=2)  # j's source among i's neighbours
    return same | linked | linked.T
