"""GCC's representation graph contrastive loss, RGC (``papers/gcc.txt`` Eq. 5, 7, 8)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def graph_contrastive_loss(z: Tensor, weights: Tensor, temperature: float = 0.1) -> Tensor:
    """Pull graph-linked embeddings together and push unlinked ones apart.

    With ``w_uv = -L_uv`` (the off-diagonal of the normalised Laplacian: A_uv / sqrt(d_u d_v))
    and ``S(x, y) = exp(x . y / tau)`` on L2-normalised rows (Eq. 7), each row u contributes

        l_u = -log( sum_{v != u, w_uv > 0} w_uv S(z_u, z_v) / sum_{v != u, w_uv = 0} S(z_u, z_v) )

    (Eq. 8). Unlike NT-Xent, linked pairs are not in the denominator. Rows without any linked
    or without any unlinked partner are left out of the mean (their l_u is undefined).

    Args:
        z: (M, d) embeddings of M views (normalised inside).
        weights: (M, M) non-negative Laplacian weights; > 0 marks a linked pair. The diagonal is
            ignored.
        temperature: tau > 0 (paper: 0.1).

    Returns:
        Scalar: mean of l_u over the rows where it is defined (0 when there are none).
    """
    if z.dim() != 2 or weights.shape != (z.shape[0], z.shape[0]):
        raise ValueError(f"z must be (M, d) and weights (M, M); got {tuple(z.shape)}, {tuple(weights.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if (weights < 0).any():
        raise ValueError("weights must be non-negative")
    m = z.shape[0]
    zn = F.normalize(z.float(), dim=1)
    logits = zn @ zn.T / temperature
    off_diag = ~torch.eye(m, dtype=torch.bool, device=z.device)
    linked = (weights > 0) & off_diag
    unlinked = (weights == 0) & off_diag
    neg_inf = torch.tensor(float("-inf"), device=z.device)
    log_w = torch.where(linked, weights.float().clamp_min(1e-30).log(), neg_inf)
    numerator = torch.logsumexp(torch.where(linked, logits + log_w, neg_inf), dim=1)
    denominator = torch.logsumexp(torch.where(unlinked, logits, neg_inf), dim=1)
    valid = linked.any(dim=1) & unlinked.any(dim=1)
    if not valid.any():
        return zn.sum() * 0.0
    return (denominator - numerator)[valid].mean()
