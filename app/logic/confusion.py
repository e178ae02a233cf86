"""Hungarian-aligned confusion matrices and per-cluster tables for display.

The mapping comes from :func:`clustering.metrics.hungarian_mapping` (the same one the trainer's
ACC uses), so the studio's diagonal is exactly what the logged ACC counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clustering.metrics import hungarian_mapping


@dataclass
class Confusion:
    counts: np.ndarray  # (R, K) samples per (cluster row, class column)
    row_clusters: np.ndarray  # (R,) cluster id of each row, mapped clusters first, diagonal order
    col_classes: np.ndarray  # (K,) class id of each column
    mapping: dict[int, int]  # cluster -> class (one-to-one; extra clusters unmapped)

    @property
    def accuracy(self) -> float:
        total = self.counts.sum()
        matched = sum(
            self.counts[r, list(self.col_classes).index(self.mapping[c])]
            for r, c in enumerate(self.row_clusters)
            if c in self.mapping
        )
        return float(matched / total) if total else float("nan")

    def normalized(self) -> np.ndarray:
        """Row-normalised: the share of each cluster's samples per class (empty rows stay 0)."""
        sums = self.counts.sum(axis=1, keepdims=True)
        return np.divide(self.counts, sums, out=np.zeros(self.counts.shape, dtype=float), where=sums > 0)


def aligned_confusion(labels: np.ndarray, clusters: np.ndarray, num_clusters: int,
                      mapping: dict[int, int] | None = None) -> Confusion:  # fmt: skip
    """Cluster x class counts with rows reordered so each mapped cluster sits on the diagonal of
    its class; unmapped (surplus or empty) clusters follow, largest first. ``mapping`` is the
    Hungarian mapping when already known (``Predictions.mapping``); computed here otherwise."""
    labels = np.asarray(labels).astype(np.int64)
    clusters = np.asarray(clusters).astype(np.int64)
    classes = np.unique(labels)
    n_rows = max(int(num_clusters), int(clusters.max()) + 1 if clusters.size else 0)
    full = np.zeros((n_rows, len(classes)), dtype=np.int64)
    np.add.at(full, (clusters, np.searchsorted(classes, labels)), 1)
    if mapping is None:
        mapping = hungarian_mapping(labels, clusters) if labels.size else {}
    col_of = {int(c): i for i, c in enumerate(classes)}
    mapped = sorted(mapping, key=lambda c: col_of[mapping[c]])
    rest = sorted(set(range(n_rows)) - set(mapped), key=lambda c: (-full[c].sum(), c))
    order = np.array(mapped + rest, dtype=np.int64)
    return Confusion(counts=full[order], row_clusters=order, col_classes=classes, mapping=mapping)


def class_name(class_names: list[str], cls: int) -> str:
    return class_names[cls] if 0 <= cls < len(class_names) else str(cls)


def cluster_table(conf: Confusion, class_names: list[str]) -> pd.DataFrame:
    """Per cluster: size, mapped class, samples of that class (correct), purity (share of its
    most common class) and that majority class."""
    rows = []
    for r, cluster in enumerate(conf.row_clusters):
        counts = conf.counts[r]
        size = int(counts.sum())
        mapped = conf.mapping.get(int(cluster))
        correct = int(counts[list(conf.col_classes).index(mapped)]) if mapped is not None else 0
        majority = int(conf.col_classes[int(np.argmax(counts))]) if size else None
        rows.append(
            {
                "cluster": int(cluster),
                "size": size,
                "mapped class": class_name(class_names, mapped) if mapped is not None else "(unmapped)",
                "correct": correct,
                "precision": correct / size if size else None,
                "purity": float(counts.max() / size) if size else None,
                "majority class": class_name(class_names, majority) if majority is not None else "",
            }
        )
    return pd.DataFrame(rows)


def mapping_table(conf: Confusion, class_names: list[str]) -> pd.DataFrame:
    """The Hungarian mapping as a two-column table, in diagonal order."""
    return pd.DataFrame(
        [
            {"cluster": c, "class": class_name(class_names, conf.mapping[c])}
            for c in conf.row_clusters
            if c in conf.mapping
        ]
    )


def cell_indices(clusters: np.ndarray, labels: np.ndarray, cluster: int, cls: int) -> np.ndarray:
    """Positions (into the predictions arrays) of the samples behind one matrix cell."""
    return np.flatnonzero((np.asarray(clusters) == cluster) & (np.asarray(labels) == cls))


def sizes_table(clusters: np.ndarray, confidence: np.ndarray, num_clusters: int) -> pd.DataFrame:
    """Per-cluster size and mean confidence, for runs without labels."""
    clusters = np.asarray(clusters).astype(np.int64)
    sizes = np.bincount(clusters, minlength=num_clusters)
    sums = np.bincount(clusters, weights=np.asarray(confidence, dtype=float), minlength=num_clusters)
    mean = np.divide(sums, sizes, out=np.full(len(sizes), np.nan), where=sizes > 0)
    return pd.DataFrame({"cluster": np.arange(len(sizes)), "size": sizes, "mean confidence": mean})


def top_confused_cells(conf: Confusion, count: int = 20) -> list[tuple[int, int, int]]:
    """The ``count`` largest off-diagonal cells as (row, column, samples): at 200 classes the
    matrix is 40,000 cells, and these are the ones worth reading first."""
    counts = conf.counts.copy()
    col_of = {int(c): i for i, c in enumerate(conf.col_classes)}
    for r, cluster in enumerate(conf.row_clusters):
        if int(cluster) in conf.mapping:
            counts[r, col_of[conf.mapping[int(cluster)]]] = 0  # the diagonal: correct samples
    flat = np.argsort(-counts, axis=None, kind="stable")[:count]
    rows, cols = np.unravel_index(flat, counts.shape)
    return [(int(r), int(c), int(counts[r, c])) for r, c in zip(rows, cols, strict=True) if counts[r, c] > 0]
