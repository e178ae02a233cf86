"""The story of a run from ``history.bin``: cluster sizes over time, churn, flows, per-image history.

Cluster ids are the head's output units, so the same id means the same unit at every evaluation:
a flow from cluster 3 to cluster 3 is a sample that stayed. Everything here is vectorised over
samples (a 100,000-sample, 300-evaluation history is read as needed from the memory map).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clustering.history import RunHistory


def sizes_over_time(history: RunHistory, num_clusters: int) -> np.ndarray:
    """(E, C) samples per cluster at each evaluation."""
    width = max(int(num_clusters), 1)
    out = np.zeros((len(history), width), dtype=np.int64)
    for e in range(len(history)):
        counts = np.bincount(np.asarray(history.cluster[e], dtype=np.int64), minlength=width)
        out[e] = counts[:width]
    return out


def churn(history: RunHistory) -> np.ndarray:
    """(E - 1,) share of samples whose cluster changed from each evaluation to the next."""
    if len(history) < 2:
        return np.zeros(0)
    return np.array([float(np.mean(history.cluster[e + 1] != history.cluster[e])) for e in range(len(history) - 1)])


@dataclass
class SampleHistory:
    """Per sample: how often its cluster changed and from which evaluation on it stayed."""

    flips: np.ndarray  # (N,) number of evaluations at which the cluster differed from the one before
    settled_eval: np.ndarray  # (N,) first evaluation from which the cluster never changed again
    final_cluster: np.ndarray  # (N,)
    mean_confidence: np.ndarray  # (N,) over all evaluations


def sample_history(history: RunHistory) -> SampleHistory:
    """One pass over the evaluations (memory stays O(N), not O(E N))."""
    n, e_count = history.num_samples, len(history)
    flips = np.zeros(n, dtype=np.int64)
    last_change = np.zeros(n, dtype=np.int64)  # evaluation at which the final cluster was entered
    conf_sum = np.asarray(history.confidence[0], dtype=np.float64).copy()
    previous = np.asarray(history.cluster[0])
    for e in range(1, e_count):
        current = np.asarray(history.cluster[e])
        changed = current != previous
        flips += changed
        last_change[changed] = e
        conf_sum += history.confidence[e]
        previous = current
    return SampleHistory(flips, last_change, previous.astype(np.int64), conf_sum / max(e_count, 1))


def settled_curve(story: SampleHistory, num_evals: int) -> np.ndarray:
    """(E,) share of samples already in their final cluster for good at each evaluation."""
    counts = np.bincount(story.settled_eval, minlength=num_evals)[:num_evals]
    return np.cumsum(counts) / max(len(story.settled_eval), 1)


def most_unstable(story: SampleHistory, count: int) -> np.ndarray:
    """Positions of the samples that flipped most (ties: the later settled first)."""
    order = np.lexsort((-story.settled_eval, -story.flips))
    return order[: max(int(count), 0)]


def trajectory(history: RunHistory, position: int) -> pd.DataFrame:
    """One sample's cluster and confidence at every evaluation."""
    return pd.DataFrame(
        {
            "step": history.steps,
            "epoch": history.epochs,
            "cluster": np.asarray(history.cluster[:, position], dtype=np.int64),
            "confidence": np.asarray(history.confidence[:, position], dtype=np.float64),
        }
    )


@dataclass
class Flow:
    """Samples moving from the clusters of evaluation ``a`` to those of ``b``."""

    counts: np.ndarray  # (C_a, C_b)
    links: pd.DataFrame  # source, target, samples (the largest links, then "other" folded)
    stayed: float  # share of samples with the same cluster id at both evaluations


def flow(history: RunHistory, a: int, b: int, max_links: int = 80) -> Flow:
    """The (C x C) table of evaluation ``a``'s clusters against ``b``'s and its largest links.

    With 200 clusters the full table has 40,000 cells; a Sankey of more than ~100 links is
    unreadable, so the smallest links are left out and their total reported as ``other``."""
    ca = np.asarray(history.cluster[a], dtype=np.int64)
    cb = np.asarray(history.cluster[b], dtype=np.int64)
    width = int(max(ca.max(initial=0), cb.max(initial=0))) + 1
    counts = np.zeros((width, width), dtype=np.int64)
    np.add.at(counts, (ca, cb), 1)
    src, dst = np.nonzero(counts)
    values = counts[src, dst]
    order = np.argsort(-values, kind="stable")
    kept = order[:max_links]
    links = pd.DataFrame({"source": src[kept], "target": dst[kept], "samples": values[kept]})
    left_out = int(values[order[max_links:]].sum())
    links.attrs["other"] = left_out
    return Flow(counts=counts, links=links, stayed=float(np.mean(ca == cb)) if ca.size else float("nan"))


def cluster_majority(cluster: np.ndarray, labels: np.ndarray | None, width: int) -> list[int | None]:
    """The most common label of each cluster (None for an empty one, or without labels)."""
    if labels is None:
        return [None] * width
    out: list[int | None] = []
    for c in range(width):
        members = labels[cluster == c]
        members = members[members >= 0]
        out.append(int(np.bincount(members).argmax()) if members.size else None)
    return out
