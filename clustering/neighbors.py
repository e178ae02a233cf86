"""Nearest-neighbour tables over a whole data set's embeddings, and random draws from them.

GCC builds its kNN graph (Eq. 6) from them, and UCCC's ``neighbor_view`` option takes one view of
every batch image from a random neighbour: an image and its nearest neighbours in the current
embedding are positives, so that what varies between neighbours (a pose of an object, a shot of a
face) is learnt as well as what the augmentations vary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def knn_indices(features: Tensor, k: int, max_block: int = 2**25) -> Tensor:
    """(N, k) indices of each row's k most cosine-similar other rows, computed in row blocks so
    that no N x N matrix is held (at most ``max_block`` similarities at a time)."""
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < N for a kNN graph, got k={k}, N={n}")
    z = F.normalize(features.float(), dim=1)
    rows = max(1, max_block // n)
    out = []
    for start in range(0, n, rows):
        sim = z[start : start + rows] @ z.T
        sim[torch.arange(sim.shape[0]), torch.arange(start, start + sim.shape[0])] = float("-inf")
        out.append(sim.topk(k, dim=1).indices)
    return torch.cat(out)


def draw_neighbors(table: Tensor, indices: Tensor, generator: torch.Generator | None,
                   include_self: bool = True) -> Tensor:  # fmt: skip
    """One random neighbour per index: uniform over its row of ``table`` (N, k), and over the index
    itself too with ``include_self`` (an instance-level positive while the table is still poor).
    Returned on ``table``'s device."""
    k = table.shape[1]
    choices = k + 1 if include_self else k
    pick = torch.randint(choices, (indices.shape[0],), generator=generator, device=indices.device)
    rows = table[indices.to(table.device)]
    if include_self:
        rows = torch.cat([rows, indices.to(rows.device)[:, None]], dim=1)
    return rows.gather(1, pick.to(rows.device)[:, None]).squeeze(1)
