"""How far LNSCC's pair objective can go on its own: optimised over a free embedding table.

LNSCC's embedding Z is learnt from the pair losses of Eq. 9, 13 and 17 on its locally normalised
kNN graph. Replacing the MLP by a free (N, d) table that Adam moves directly removes every
limit of the network and of the training budget, so k-means on the converged table bounds what
the objective itself gives (``python -m clustering bench lnscc-ceiling``). The self-training
head of Eq. 18 is left out: in LNSCC's own runs its ACC equals k-means on Z (README).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from clustering.losses import soft_contrastive_loss
from clustering.methods.lnscc import LNSCCParams
from clustering.methods.lnscc_graph import PairSampler, knn, knn_pair_sets


def knn_label_agreement(x: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's k nearest other rows that carry its label."""
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]
    return float((labels[idx] == labels[:, None]).mean())


def free_embedding_ceiling(
    inputs: np.ndarray,
    labels: np.ndarray,
    num_clusters: int,
    params: LNSCCParams | None = None,
    *,
    steps: int = 2000,
    pairs_per_step: int = 20000,
    lr: float = 0.05,
    dim: int = 64,
    seed: int = 0,
    evaluations: int = 4,
) -> list[dict[str, Any]]:
    """Minimise the mean pair cost of LNSCC over a free (N, dim) table and evaluate it on the way.

    Args:
        inputs: (N, D) vectors the graph is built on (LNSCC's ``graph_inputs``).
        labels: (N,) ground truth, for evaluation only.
        num_clusters: K for k-means.
        params: the graph, pair-set and loss parameters (M, alpha, beta, max_copies, im_neg_scale,
            graph_tau, pair_sampling, negatives, repulsion; two_stage concerns the head only).
        steps, pairs_per_step, lr: Adam on the table; each step draws ``pairs_per_step`` pairs.
        dim: the table's width (LNSCC's Z is 64-d).
        evaluations: how many evenly spaced evaluations (the last at ``steps``).

    Returns:
        One row per evaluation: step, mean pair loss since the previous one, k-means ACC/NMI on
        the table, its 10-NN label agreement, and seconds so far.
    """
    from sklearn.cluster import KMeans

    from clustering.metrics import evaluate

    p = params or LNSCCParams()
    idx, dist = knn(inputs, p.neighbors)
    sets = knn_pair_sets(idx, dist, p.alpha, p.beta, p.max_copies, p.graph_tau)
    sampler = PairSampler(sets, torch.from_numpy(idx), p.im_neg_scale, p.pair_sampling, p.negatives)
    generator = torch.Generator().manual_seed(seed)
    table = torch.nn.Parameter(0.1 * torch.randn(len(inputs), dim, generator=generator))
    optimizer = torch.optim.Adam([table], lr=lr)
    every = max(1, steps // max(1, evaluations))
    rows, losses, start = [], [], time.time()
    for step in range(1, steps + 1):
        pairs, which = sampler.draw(pairs_per_step, generator)
        loss = soft_contrastive_loss(table[pairs[:, 0]], table[pairs[:, 1]], sampler.attract[which],
                                     repulsion=p.repulsion)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % every == 0 or step == steps:
            z = table.detach().numpy()
            m = evaluate(labels, KMeans(num_clusters, n_init=3, random_state=seed).fit_predict(z))
            rows.append({"step": step, "loss": float(np.mean(losses)), "acc": m["acc"], "nmi": m["nmi"],
                         "knn_agreement": knn_label_agreement(z, labels), "seconds": time.time() - start})  # fmt: skip
            losses = []
    return rows


#: Named LNSCC option sets compared by ``bench lnscc-ceiling --configs`` (README, "LNSCC: the
#: text's missing pieces"): the paper's text, each missing piece on its own, and combinations.
CONFIGS: dict[str, dict[str, Any]] = {
    "published": {"graph_tau": 0.0, "pair_sampling": "sets", "repulsion": "log", "two_stage": 0.0, "im_neg_scale": 1.0},
    "no-im-neg": {"im_neg_scale": 0.0},
    "tau": {"graph_tau": 0.4},
    "weighted": {"pair_sampling": "weighted"},
    "bounded": {"repulsion": "bounded"},
    "two-stage": {"two_stage": 0.5},
    "weighted+two-stage": {"pair_sampling": "weighted", "two_stage": 0.5},
    "tau+weighted": {"graph_tau": 0.4, "pair_sampling": "weighted"},
    "tau+weighted+bounded": {"graph_tau": 0.4, "pair_sampling": "weighted", "repulsion": "bounded"},
    "all": {"graph_tau": 0.4, "pair_sampling": "weighted", "repulsion": "bounded", "two_stage": 0.5},
    "default": {},
}


def config_params(name: str) -> dict[str, Any]:
    """The LNSCC parameter overrides of a named configuration ("published" pins every option to
    the paper; the others change only what they name; "default" is LNSCCParams as shipped)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown LNSCC configuration {name!r}; valid: {', '.join(CONFIGS)}")
    published = dict(CONFIGS["published"])
    return published | CONFIGS[name] if name not in ("published", "default") else dict(CONFIGS[name])
