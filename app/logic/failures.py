"""Per-cluster galleries and failure cases.

With labels, a failure is a sample whose true class differs from its cluster's Hungarian-mapped
class (samples in an unmapped surplus cluster all count, as they do in ACC). Without labels the
failure view is built from the model's own doubts: low-confidence samples and samples whose
community (the argmax of the fused k-hop assignment Y_pos) disagrees with their own argmax(Y).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def cluster_members(
    clusters: np.ndarray, confidence: np.ndarray, cluster: int, conf_range: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """Positions of ``cluster``'s samples within ``conf_range``, most confident first."""
    lo, hi = conf_range
    conf = np.asarray(confidence)
    idx = np.flatnonzero((np.asarray(clusters) == cluster) & (conf >= lo) & (conf <= hi))
    return idx[np.argsort(-conf[idx], kind="stable")]


def mapped_labels(clusters: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """The class each sample's cluster is mapped to, -1 for unmapped clusters."""
    lookup = np.full(int(max([*mapping, int(np.max(clusters))])) + 1, -1, dtype=np.int64)
    for c, k in mapping.items():
        lookup[c] = k
    return lookup[np.asarray(clusters).astype(np.int64)]


def failure_indices(clusters: np.ndarray, labels: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Positions whose true label differs from the cluster's mapped label."""
    return np.flatnonzero(mapped_labels(clusters, mapping) != np.asarray(labels))


def failures_by_class(
    clusters: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    mapping: dict[int, int],
    conf_range: tuple[float, float] = (0.0, 1.0),
) -> dict[int, np.ndarray]:
    """True class -> its misassigned samples (within ``conf_range``), most confident first:
    confidently wrong samples are the most telling ones."""
    fails = failure_indices(clusters, labels, mapping)
    conf = np.asarray(confidence)
    lo, hi = conf_range
    fails = fails[(conf[fails] >= lo) & (conf[fails] <= hi)]
    out: dict[int, np.ndarray] = {}
    for cls in np.unique(np.asarray(labels)[fails]):
        idx = fails[np.asarray(labels)[fails] == cls]
        out[int(cls)] = idx[np.argsort(-conf[idx], kind="stable")]
    return out


def confused_pairs(
    clusters: np.ndarray, labels: np.ndarray, mapping: dict[int, int], class_names: list[str], top: int = 10
) -> pd.DataFrame:
    """The most frequent (true class -> assigned as) pairs among the failures."""
    mapped = mapped_labels(clusters, mapping)
    labels = np.asarray(labels)
    wrong = mapped != labels
    if not wrong.any():
        return pd.DataFrame(columns=["true class", "assigned as", "count", "share of class"])
    pairs, counts = np.unique(np.stack([labels[wrong], mapped[wrong]], axis=1), axis=0, return_counts=True)
    class_sizes = {int(c): int(n) for c, n in zip(*np.unique(labels, return_counts=True), strict=True)}

    def name(c: int) -> str:
        if c < 0:
            return "(unmapped cluster)"
        return class_names[c] if c < len(class_names) else str(c)

    order = np.argsort(-counts, kind="stable")[:top]
    return pd.DataFrame(
        [
            {
                "true class": name(int(pairs[i, 0])),
                "assigned as": name(int(pairs[i, 1])),
                "count": int(counts[i]),
                "share of class": counts[i] / class_sizes[int(pairs[i, 0])],
            }
            for i in order
        ]
    )


def low_confidence(confidence: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` least confident positions, least confident first."""
    conf = np.asarray(confidence)
    return np.argsort(conf, kind="stable")[: max(0, int(count))]


def community_disagreements(own: np.ndarray, community: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Positions (from ``positions``, the sample the graph was built on) whose community
    assignment argmax(Y_pos) differs from their own argmax(Y)."""
    return np.asarray(positions)[np.asarray(own) != np.asarray(community)]
