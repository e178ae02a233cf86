"""UCCC's community-consensus cluster loss (Eq. 6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def uccc_cluster_loss(
    y_pos: Tensor, y_neg: Tensor, *, cosine: bool = False, temperature: float = 1.0, center: bool = False
) -> Tensor:
    """Eq. 6 over community assignments of the 2N views.

        L = -log( sum_i exp(yp_ia . yp_ib + yn_ia . yn_ib) / sum_{i,j,m,n} exp(yp_im . yn_jn) )

    Args:
        y_pos: (2N, C) positive community assignments, rows ordered [view a (N); view b (N)].
        y_neg: (2N, C) negative community assignments, same order.
        cosine: measure every agreement by cosine similarity (rows L2-normalised) instead of the
            raw dot product. The literal equation (False) collapses to one cluster in practice
            (see README); ``cosine=True`` is the project's default UCCC variant.
        temperature: every agreement is divided by it (1.0 with ``cosine=False`` is literal).

    Returns:
        Scalar loss, computed with logsumexp.
    """
    if y_pos.shape != y_neg.shape or y_pos.dim() != 2:
        raise ValueError(f"y_pos and y_neg must both be (2N, C); got {tuple(y_pos.shape)}, {tuple(y_neg.shape)}")
    if y_pos.shape[0] % 2 or y_pos.shape[0] < 2:
        raise ValueError(f"expected 2N rows (two views), got {y_pos.shape[0]}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    y_pos = y_pos.float()
    y_neg = y_neg.float()
    if center:
        y_pos = y_pos - y_pos.mean(dim=1, keepdim=True)
        y_neg = y_neg - y_neg.mean(dim=1, keepdim=True)
    if cosine:
        y_pos = F.normalize(y_pos, dim=1)
        y_neg = F.normalize(y_neg, dim=1)
    n = y_pos.shape[0] // 2
    agree_pos = (y_pos[:n] * y_pos[n:]).sum(dim=1)
    agree_neg = (y_neg[:n] * y_neg[n:]).sum(dim=1)
    numerator = torch.logsumexp((agree_pos + agree_neg) / temperature, dim=0)
    denominator = torch.logsumexp((y_pos @ y_neg.T / temperature).flatten(), dim=0)
    return denominator - numerator
