"""Clustering metrics: one function used by the trainer, the CLI, the benchmarks and the studio.

ACC uses the Hungarian assignment on the (clusters x classes) contingency table, which may be
rectangular; NMI and ARI come from scikit-learn; JSD is the Jensen-Shannon divergence (base 2,
so in [0, 1]) between the predicted cluster-size distribution, carried into label space through
the Hungarian mapping, and the label distribution.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def contingency(labels: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts table of shape (n_clusters, n_classes) and the cluster/class ids of its rows/cols."""
    labels = np.asarray(labels).ravel()
    preds = np.asarray(preds).ravel()
    clusters, pred_idx = np.unique(preds, return_inverse=True)
    classes, label_idx = np.unique(labels, return_inverse=True)
    table = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(table, (pred_idx, label_idx), 1)
    return table, clusters, classes


def hungarian_mapping(labels: np.ndarray, preds: np.ndarray) -> dict[int, int]:
    """Cluster id -> class id maximising matched samples; one-to-one, so with more clusters
    than classes some clusters stay unmapped (and count as errors in ACC)."""
    table, clusters, classes = contingency(labels, preds)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {int(clusters[r]): int(classes[c]) for r, c in zip(rows, cols, strict=True)}


def accuracy(labels: np.ndarray, preds: np.ndarray, mapping: dict[int, int] | None = None) -> float:
    labels = np.asarray(labels).ravel()
    preds = np.asarray(preds).ravel()
    if labels.size == 0:
        return float("nan")
    mapping = hungarian_mapping(labels, preds) if mapping is None else mapping
    mapped = np.array([mapping.get(int(p), -(10**9)) for p in preds])
    return float(np.mean(mapped == labels))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (base 2): 0 for equal distributions, at most 1."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"distributions must have the same shape, got {p.shape} and {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("distributions must have positive mass")
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    return float(min(max(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0), 1.0))


def size_divergence(labels: np.ndarray, preds: np.ndarray, mapping: dict[int, int]) -> float:
    """JSD between the cluster-size distribution (mapped into label space; unmapped clusters
    keep bins of their own) and the label distribution."""
    labels = np.asarray(labels).ravel()
    preds = np.asarray(preds).ravel()
    classes = sorted(set(labels.tolist()))
    extra = sorted({int(c) for c in np.unique(preds) if int(c) not in mapping})
    bins = {c: i for i, c in enumerate(classes)}
    bins.update({("unmapped", c): len(classes) + i for i, c in enumerate(extra)})
    p = np.zeros(len(bins))
    q = np.zeros(len(bins))
    for cluster, count in zip(*np.unique(preds, return_counts=True), strict=True):
        key = mapping.get(int(cluster), ("unmapped", int(cluster)))
        p[bins[key]] += count
    for cls, count in zip(*np.unique(labels, return_counts=True), strict=True):
        q[bins[int(cls)]] += count
    return js_divergence(p, q)


def evaluate(labels: np.ndarray | None, preds: np.ndarray, probs: np.ndarray | None = None) -> dict[str, Any]:
    """All metrics of one clustering.

    Args:
        labels: (N,) integer class labels, or None when the data set has none.
        preds: (N,) integer cluster ids.
        probs: optional (N, C) cluster probabilities, for ``confidence``.

    Returns:
        dict with keys ``acc, nmi, ari, jsd, confidence, n_nonempty, cluster_sizes, mapping``
        (and ``purity``: per-cluster share of its most common label). Label-based entries are
        None when ``labels`` is None. ``cluster_sizes`` has length C when ``probs`` is given.
    """
    preds = np.asarray(preds).astype(np.int64).ravel()
    n_clusters = probs.shape[1] if probs is not None else (int(preds.max()) + 1 if preds.size else 0)
    sizes = np.bincount(preds, minlength=n_clusters) if preds.size else np.zeros(n_clusters, int)
    out: dict[str, Any] = {
        "confidence": float(np.mean(np.max(probs, axis=1))) if probs is not None and len(probs) else None,
        "n_nonempty": int(np.count_nonzero(sizes)),
        "cluster_sizes": sizes.astype(int).tolist(),
        "acc": None,
        "nmi": None,
        "ari": None,
        "jsd": None,
        "mapping": None,
        "purity": None,
    }
    if labels is None:
        return out
    labels = np.asarray(labels).astype(np.int64).ravel()
    if labels.shape != preds.shape:
        raise ValueError(f"labels and preds differ in length: {labels.shape} vs {preds.shape}")
    mapping = hungarian_mapping(labels, preds)
    table, clusters, _ = contingency(labels, preds)
    out.update(
        acc=accuracy(labels, preds, mapping),
        nmi=float(normalized_mutual_info_score(labels, preds)),
        ari=float(adjusted_rand_score(labels, preds)),
        jsd=size_divergence(labels, preds, mapping),
        mapping={str(k): v for k, v in mapping.items()},
        purity={str(int(c)): float(row.max() / row.sum()) for c, row in zip(clusters, table, strict=True)},
    )
    return out


#: Keys of ``evaluate`` that are scalars, logged in every ``metrics.jsonl`` row.
SCALAR_KEYS = ("acc", "nmi", "ari", "jsd", "confidence", "n_nonempty")
