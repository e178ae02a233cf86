"""Community-graph statistics on a sample of a run's instance embeddings.

The graph itself comes from :mod:`clustering.graph` (the functions the trainer uses), applied to
the predictions' L2-normalised ``z`` and ``Y = probs``. Because a batch in training is a few
hundred views, the studio looks at a sample of similar size (default 2,048) rather than all N.

Peer sets are exact: hop 1 over every sampled image; hops >= 2 by breadth-first expansion from
up to ``max_anchors`` sampled images (a dense reachability matrix for all images would cost an
n^3 product per hop, far over the slider's time budget).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clustering.graph import (
    cosine_similarity_matrix,
    positive_adjacency,
    positive_threshold,
    propagate,
    symmetric_normalize,
)
from clustering.methods.uccc import UCCCParams
from clustering.metrics import accuracy

DEFAULT_SAMPLE = 2048


def sample_positions(n_total: int, size: int | None, seed: int = 0) -> np.ndarray:
    """``size`` distinct positions out of ``n_total`` (all when size is None or >= n), sorted."""
    if size is None or size >= n_total:
        return np.arange(n_total)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=int(size), replace=False))


@dataclass
class GraphSample:
    positions: np.ndarray  # (n,) positions into the predictions arrays
    z: torch.Tensor  # (n, d) float32, L2-normalised
    y: torch.Tensor  # (n, C) float32 cluster probabilities
    labels: np.ndarray | None  # (n,) or None
    sim: torch.Tensor  # (n, n) cosine similarities

    def __len__(self) -> int:
        return int(self.positions.shape[0])


def build_sample(
    z: np.ndarray, probs: np.ndarray, labels: np.ndarray | None, positions: np.ndarray
) -> GraphSample:
    zt = torch.from_numpy(np.asarray(z[positions], dtype=np.float32))
    zt = torch.nn.functional.normalize(zt, dim=1)  # float16 storage leaves norms ~1e-3 off
    yt = torch.from_numpy(np.asarray(probs[positions], dtype=np.float32))
    return GraphSample(
        positions=np.asarray(positions),
        z=zt,
        y=yt,
        labels=None if labels is None else np.asarray(labels)[positions],
        sim=cosine_similarity_matrix(zt),
    )


@dataclass(frozen=True)
class GraphSettings:
    """A run's community-graph settings, UCCC's own defaults where the run does not name them
    (a CC or GCC run has none)."""

    tolerance: float
    pos_conf: float | None
    khop: int
    neg_conf: float

    @classmethod
    def of(cls, method_params: dict | None) -> GraphSettings:
        mp, default = method_params or {}, UCCCParams()

        def pick(name: str) -> object:
            return mp.get(name) if mp.get(name) is not None else getattr(default, name)

        pos_conf = pick("pos_conf")
        return cls(float(pick("tolerance")), None if pos_conf is None else float(pos_conf), int(pick("khop")),
                   float(pick("neg_conf")))  # fmt: skip

    def threshold(self, num_clusters: int) -> float:
        return resolve_threshold(num_clusters, self.tolerance, self.pos_conf)


def resolve_threshold(
    num_clusters: int, tolerance: float | None = None, pos_conf: float | None = None
) -> float:
    """An explicit threshold, or the trainer's rule from the tolerant parameter t.

    Raises:
        ValueError: with clustering.graph's message when t and C give no valid threshold.
    """
    if pos_conf is not None:
        if not -1.0 < pos_conf < 1.0:
            raise ValueError(f"positive threshold must be in (-1, 1), got {pos_conf}")
        return float(pos_conf)
    return positive_threshold(int(num_clusters), UCCCParams().tolerance if tolerance is None else float(tolerance))


@dataclass
class GraphStats:
    pos_conf: float
    k: int
    peers: np.ndarray  # (n,) positive peers per image (self excluded)
    share_with_peer: float
    neg_peers: np.ndarray  # (n,) negative peers per image (s_ij < neg_conf)
    hop_peers: list[float]  # mean number of images first reached at hop h (h = 1..k)
    hop_precision: list[float | None]  # share of those with the anchor's label (None: no labels)
    n_anchors: int
    community: np.ndarray  # (n,) argmax(Y_pos)
    own: np.ndarray  # (n,) argmax(Y)
    agreement: float  # mean(argmax Y_pos == argmax Y)
    acc_own: float | None  # Hungarian ACC of argmax(Y) on the sample
    acc_community: float | None  # Hungarian ACC of argmax(Y_pos) on the sample


def positive_mask(sim: torch.Tensor, pos_conf: float) -> torch.Tensor:
    """Boolean positive peers (s_ij > threshold), self excluded: Eq. 3's support off the diagonal."""
    mask = sim > pos_conf
    mask.fill_diagonal_(False)
    return mask


def graph_stats(
    sample: GraphSample, pos_conf: float, k: int, neg_conf: float = 0.0, max_anchors: int = 128, seed: int = 0
) -> GraphStats:
    """Everything the community-graph view shows for one (threshold, k)."""
    if k < 1:
        raise ValueError(f"k (hops) must be >= 1, got {k}")
    n = len(sample)
    a_pos = symmetric_normalize(positive_adjacency(sample.sim, pos_conf))
    # Peers = the graph's support off the diagonal (s_ii = 1 is always above the threshold).
    peers = ((a_pos > 0).sum(dim=1) - (torch.diagonal(a_pos) > 0).to(torch.int64)).numpy()
    neg = (sample.sim < neg_conf).sum(dim=1).numpy()

    rng = np.random.default_rng(seed)
    anchors = np.arange(n) if n <= max_anchors else np.sort(rng.choice(n, max_anchors, replace=False))
    hop_peers, hop_precision = _hop_statistics(a_pos, anchors, sample.labels, k)

    y_pos = propagate(a_pos, sample.y, k)
    community = y_pos.argmax(dim=1).numpy()
    own = sample.y.argmax(dim=1).numpy()
    acc_own = acc_comm = None
    if sample.labels is not None:
        acc_own = accuracy(sample.labels, own)
        acc_comm = accuracy(sample.labels, community)
    return GraphStats(
        pos_conf=float(pos_conf),
        k=int(k),
        peers=peers,
        share_with_peer=float(np.mean(peers > 0)),
        neg_peers=neg,
        hop_peers=hop_peers,
        hop_precision=hop_precision,
        n_anchors=len(anchors),
        community=community,
        own=own,
        agreement=float(np.mean(community == own)),
        acc_own=acc_own,
        acc_community=acc_comm,
    )


def _hop_statistics(
    adj: torch.Tensor, anchors: np.ndarray, labels: np.ndarray | None, k: int
) -> tuple[list[float], list[float | None]]:
    """Breadth-first hop sets from ``anchors`` over the non-negative graph ``adj`` (any weights;
    only its support matters): mean size and same-label share of the images first reached at
    each hop."""
    idx = torch.from_numpy(anchors)
    seen = torch.zeros(len(anchors), adj.shape[0], dtype=torch.bool)
    seen[torch.arange(len(anchors)), idx] = True
    frontier = seen.clone()
    same = None
    if labels is not None:
        lab = torch.from_numpy(np.asarray(labels))
        same = lab[None, :] == lab[idx][:, None]
    sizes: list[float] = []
    precision: list[float | None] = []
    for _ in range(k):
        reached = (frontier.to(torch.float32) @ adj) > 0
        new = reached & ~seen
        seen |= new
        frontier = new
        count = new.sum()
        sizes.append(float(count) / len(anchors))
        if same is None:
            precision.append(None)
        else:
            precision.append(float((new & same).sum()) / float(count) if count > 0 else None)
    return sizes, precision


@dataclass
class Peer:
    position: int  # position into the predictions arrays
    hop: int  # 1..k for positive peers, 0 for negative peers
    similarity: float  # cosine similarity to the picked image


def peers_of(
    sample: GraphSample,
    z_query: np.ndarray,
    pos_conf: float,
    k: int,
    neg_conf: float = 0.0,
    exclude: int | None = None,
    per_hop: int = 12,
) -> tuple[list[list[Peer]], list[Peer]]:
    """A picked image's positive peers per hop (1..k) among the sample, most similar first, and
    its strongest negative peers (most negative similarity first).

    The picked image need not be in the sample; ``exclude`` (its position) keeps it out of its
    own peer lists when it is.
    """
    q = torch.nn.functional.normalize(torch.from_numpy(np.asarray(z_query, dtype=np.float32))[None], dim=1)[0]
    s = sample.z @ q  # (n,)
    positions = torch.from_numpy(sample.positions)
    self_mask = positions == exclude if exclude is not None else torch.zeros(len(sample), dtype=torch.bool)
    seen = self_mask.clone()
    frontier = (s > pos_conf) & ~seen
    mask = None
    hops: list[list[Peer]] = []
    for hop in range(1, k + 1):
        if hop > 1:
            if mask is None:
                mask = positive_mask(sample.sim, pos_conf)
            frontier = mask[frontier].any(dim=0) & ~seen
        seen |= frontier
        members = torch.nonzero(frontier).flatten()
        order = members[torch.argsort(s[members], descending=True)][:per_hop]
        hops.append([Peer(int(positions[i]), hop, float(s[i])) for i in order])
    neg_idx = torch.nonzero((s < neg_conf) & ~self_mask).flatten()
    neg_order = neg_idx[torch.argsort(s[neg_idx])][:per_hop]
    negatives = [Peer(int(positions[i]), 0, float(s[i])) for i in neg_order]
    return hops, negatives


def hop_counts(
    sample: GraphSample, z_query: np.ndarray, pos_conf: float, k: int, exclude: int | None = None
) -> list[int]:
    """How many sampled images the picked one reaches first at each hop (uncapped)."""
    hops, _ = peers_of(sample, z_query, pos_conf, k, exclude=exclude, per_hop=len(sample))
    return [len(h) for h in hops]
