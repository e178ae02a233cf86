"""Raw-pixel baselines of ``bench quality``: k-means, agglomerative (Ward) and UMAP + k-means."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def raw_features(data) -> np.ndarray:  # noqa: ANN001
    x = data.inputs.float().numpy().reshape(len(data), -1)
    return x / 255.0 if data.kind == "image" else x


def baseline_rows(data, dataset: str, seeds: list[int], root_images=None) -> list[dict[str, Any]]:  # noqa: ANN001
    """k-means, agglomerative (Ward) and UMAP + k-means on raw pixels, timed in this run."""
    from sklearn.cluster import AgglomerativeClustering, KMeans

    from clustering.metrics import evaluate

    x = raw_features(data if root_images is None else root_images)
    k = data.num_classes
    rows = []

    def add(name: str, seed: int, fit) -> None:  # noqa: ANN001
        start = time.time()
        preds = fit(seed)
        m = evaluate(data.labels, preds)
        rows.append({"dataset": dataset, "method": name, "config": "raw pixels", "seed": seed,
                     "seconds": time.time() - start, "epochs": None,
                     **{key: m[key] for key in ("acc", "nmi", "ari", "jsd", "n_nonempty")}})  # fmt: skip

    for seed in seeds:
        add("k-means", seed, lambda s: KMeans(k, n_init=10, random_state=s).fit_predict(x))
    add("agglomerative", 0, lambda s: AgglomerativeClustering(k, linkage="ward").fit_predict(x))
    for seed in seeds:

        def umap_kmeans(s: int) -> np.ndarray:
            import umap

            emb = umap.UMAP(n_components=10, n_neighbors=15, min_dist=0.0, random_state=s).fit_transform(x)
            return KMeans(k, n_init=10, random_state=s).fit_predict(emb)

        add("umap+k-means", seed, umap_kmeans)
    return rows
