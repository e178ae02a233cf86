"""NT-Xent (normalised temperature-scaled cross entropy), the SimCLR instance loss (UCCC Eq. 1-2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def nt_xent(z_a: Tensor, z_b: Tensor, temperature: float = 0.5) -> Tensor:
    """Contrast each view with its partner against the other 2N - 2 views.

    For the 2N rows of [z_a; z_b] (L2-normalised inside), the anchor i's positive is its other
    view; the denominator sums every other row, the positive included (as SimCLR and CC do):

        l_i = -log( exp(s_ip / tau) / sum_{j != i} exp(s_ij / tau) )

    Args:
        z_a: (N, d) embeddings of view a.
        z_b: (N, d) embeddings of view b, row i paired with row i of ``z_a``.
        temperature: tau > 0.

    Returns:
        Scalar: the mean of l_i over the 2N anchors. (The paper's Eq. 2 sums; the mean only
        rescales the gradient and keeps loss values comparable across batch sizes.)
    """
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"z_a and z_b must both be (N, d); got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if z_a.shape[0] < 2:
        raise ValueError("NT-Xent needs at least 2 samples per view")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z_a.shape[0]
    z = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)
