"""A run's ``predictions.npz`` as a validated, display-ready object.

The trainer writes index, cluster, confidence, label (-1 = none), probs (N, C) float32,
z (N, 128) float16 (L2-normalised) and h (N, F) float16. A run trained by an older or newer
version, or one copied in half-way, may lack some of them; :func:`from_arrays` derives what it
can (cluster and confidence from probs) and reports what it cannot instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from clustering.metrics import hungarian_mapping


@dataclass
class Predictions:
    index: np.ndarray  # (N,) positions in the run's data set
    cluster: np.ndarray  # (N,) int
    confidence: np.ndarray  # (N,) float
    label: np.ndarray | None  # (N,) int, None when the data set has no labels
    probs: np.ndarray | None  # (N, C) float32
    z: np.ndarray | None  # (N, d) float16, L2-normalised
    h: np.ndarray | None  # (N, F) float16
    num_clusters: int
    missing: list[str] = field(default_factory=list)
    step: int | None = None  # the evaluation's training step (None in files from before it was kept)

    def __len__(self) -> int:
        return int(self.cluster.shape[0])

    @property
    def has_labels(self) -> bool:
        return self.label is not None

    @cached_property
    def mapping(self) -> dict[int, int]:
        """Cluster -> class by the Hungarian assignment (the trainer's ACC), computed once per
        predictions file (the studio caches this object per file) and shared by every page."""
        return hungarian_mapping(self.label, self.cluster) if self.label is not None and len(self) else {}

    def features(self, source: str) -> np.ndarray | None:
        """``z``, ``h`` or ``probs`` as float32 (None when the run did not save it)."""
        arr = {"z": self.z, "h": self.h, "probs": self.probs}[source]
        return None if arr is None else np.asarray(arr, dtype=np.float32)


def from_arrays(arrays: dict[str, np.ndarray], num_clusters: int | None = None) -> Predictions | None:
    """Build :class:`Predictions` from the npz arrays; None when there is nothing usable."""
    probs = arrays.get("probs")
    if probs is not None and (probs.ndim != 2 or probs.shape[0] == 0):
        probs = None
    cluster = arrays.get("cluster")
    if cluster is None and probs is not None:
        cluster = probs.argmax(axis=1)
    if cluster is None:
        return None
    cluster = np.asarray(cluster).astype(np.int64).ravel()
    n = len(cluster)
    missing: list[str] = []

    def take(key: str) -> np.ndarray | None:
        arr = arrays.get(key)
        if arr is None or len(arr) != n:
            missing.append(key)
            return None
        return arr

    probs = take("probs") if probs is not None else (missing.append("probs") or None)
    confidence = take("confidence")
    if confidence is None:
        confidence = probs.max(axis=1) if probs is not None else np.full(n, np.nan, dtype=np.float32)
    index = take("index")
    if index is None:
        index = np.arange(n)
    label = take("label")
    if label is not None:
        label = np.asarray(label).astype(np.int64)
        # -1 marks "no label": a run on an unlabelled data set has all -1.
        if (label < 0).all():
            label = None
    z = take("z")
    h = take("h")
    c = probs.shape[1] if probs is not None else int(num_clusters or (cluster.max() + 1))
    return Predictions(
        index=np.asarray(index).astype(np.int64),
        cluster=cluster,
        confidence=np.asarray(confidence, dtype=np.float32),
        label=label,
        probs=None if probs is None else np.asarray(probs, dtype=np.float32),
        z=z,
        h=h,
        num_clusters=max(c, int(cluster.max()) + 1 if n else 0),
        missing=missing,
        step=int(arrays["step"]) if "step" in arrays and np.ndim(arrays["step"]) == 0 else None,
    )
