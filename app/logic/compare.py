"""Run against run: two runs' clusters on the same data set, aligned, and where they disagree.

Run B's clusters are mapped one-to-one onto run A's by the Hungarian assignment on their
contingency table (the same assignment ACC uses between clusters and classes), so "disagree"
means "B put the image in a cluster other than the one matching A's". With labels, each run's
own cluster -> class mapping says which of the two is right on every disputed image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from clustering.metrics import hungarian_mapping


class IncomparableRuns(ValueError):
    """The two runs did not cluster the same samples."""


@dataclass
class RunComparison:
    counts: np.ndarray  # (C_a, C_b) samples per (A cluster, B cluster), B's columns in A's order
    col_clusters: np.ndarray  # B's cluster id of each column
    b_to_a: dict[int, int]  # B cluster -> matched A cluster
    agreement: float  # share of samples where B's cluster is matched to A's
    nmi: float
    ari: float
    disagree: np.ndarray  # positions where the two runs disagree after alignment
    a_right: np.ndarray | None  # (len(disagree),) bool: A's cluster maps to the true class
    b_right: np.ndarray | None

    def verdict_counts(self) -> dict[str, int]:
        """Disputed images by who is right: only A, only B, both wrong (both right cannot happen
        for a disputed image unless the two runs' class mappings differ)."""
        if self.a_right is None or self.b_right is None:
            return {}
        return {
            "only A right": int(np.sum(self.a_right & ~self.b_right)),
            "only B right": int(np.sum(~self.a_right & self.b_right)),
            "both right": int(np.sum(self.a_right & self.b_right)),
            "both wrong": int(np.sum(~self.a_right & ~self.b_right)),
        }


def _right(labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    mapping = hungarian_mapping(labels, clusters)
    lookup = np.full(int(clusters.max(initial=0)) + 1, -(10**9), dtype=np.int64)
    for cluster, cls in mapping.items():
        lookup[cluster] = cls
    return lookup[clusters] == labels


def compare_runs(a: np.ndarray, b: np.ndarray, labels: np.ndarray | None = None) -> RunComparison:
    """Compare two runs' cluster assignments of the same N samples; ``labels`` (all -1 when the
    data set has none) add who is right on each disputed image."""
    a = np.asarray(a, dtype=np.int64).ravel()
    b = np.asarray(b, dtype=np.int64).ravel()
    if a.shape != b.shape:
        raise IncomparableRuns(
            f"the runs clustered different data: {a.size:,} samples against {b.size:,} "
            "(compare runs on the same data set and split)"
        )
    b_to_a = hungarian_mapping(a, b)  # "labels" = A's clusters, "predictions" = B's
    a_width = int(a.max(initial=0)) + 1
    b_ids = np.unique(b)
    matched = sorted((bc for bc in b_ids if int(bc) in b_to_a), key=lambda bc: b_to_a[int(bc)])
    rest = sorted((bc for bc in b_ids if int(bc) not in b_to_a), key=lambda bc: -np.sum(b == bc))
    col_clusters = np.array(matched + rest, dtype=np.int64)
    col_of = np.full(int(b.max(initial=0)) + 1, -1, dtype=np.int64)
    col_of[col_clusters] = np.arange(len(col_clusters))
    counts = np.zeros((a_width, len(col_clusters)), dtype=np.int64)
    np.add.at(counts, (a, col_of[b]), 1)
    b_as_a = np.array([b_to_a.get(int(x), -1) for x in range(int(b.max(initial=0)) + 1)], dtype=np.int64)[b]
    disagree = np.flatnonzero(b_as_a != a)
    a_right = b_right = None
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64).ravel()
        if labels.shape != a.shape:
            raise IncomparableRuns(f"{labels.size:,} labels for {a.size:,} samples")
        if labels.size and labels.min() >= 0:  # -1 marks a data set without labels
            a_right, b_right = _right(labels, a)[disagree], _right(labels, b)[disagree]
    return RunComparison(
        counts=counts,
        col_clusters=col_clusters,
        b_to_a=b_to_a,
        agreement=float(np.mean(b_as_a == a)) if a.size else float("nan"),
        nmi=float(normalized_mutual_info_score(a, b)),
        ari=float(adjusted_rand_score(a, b)),
        disagree=disagree,
        a_right=a_right,
        b_right=b_right,
    )
