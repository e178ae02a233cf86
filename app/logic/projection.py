"""2-D projections (t-SNE, UMAP) of a run's embeddings, cached on disk.

A projection of 10k points takes tens of seconds on a small CPU, so each is computed once and
stored as ``<cache dir>/proj-<key>.npz``. The key hashes the predictions file's size and
mtime (a new evaluation or checkpoint rewrites it) with every parameter that changes the
result, so a stale projection is never shown and old ones are simply ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clustering.runs import atomic_path

METHODS = ("tsne", "umap")
SOURCES = ("z", "h", "probs")


@dataclass(frozen=True)
class ProjectionParams:
    method: str = "tsne"  # tsne | umap
    source: str = "z"  # z (instance embeddings) | h (backbone features) | probs
    subsample: int | None = 5000  # None: every sample
    seed: int = 0
    perplexity: float = 30.0  # t-SNE
    n_neighbors: int = 15  # UMAP
    min_dist: float = 0.1  # UMAP

    def relevant(self) -> dict[str, object]:
        """The fields that change this method's result (so t-SNE ignores UMAP's knobs)."""
        d = asdict(self)
        drop = ("n_neighbors", "min_dist") if self.method == "tsne" else ("perplexity",)
        return {k: v for k, v in d.items() if k not in drop}


def predictions_fingerprint(path: Path) -> dict[str, int]:
    """Size and mtime of predictions.npz; zeros when it is missing."""
    try:
        st = Path(path).stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"size": 0, "mtime_ns": 0}


def cache_key(fingerprint: dict[str, int], params: ProjectionParams) -> str:
    blob = json.dumps({"predictions": fingerprint, "params": params.relevant()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_file(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"proj-{key}.npz"


def subsample_positions(n: int, size: int | None, seed: int) -> np.ndarray:
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(size), replace=False))


def compute(features: np.ndarray, params: ProjectionParams) -> np.ndarray:
    """(m, d) -> (m, 2) float32. PCA to 50 dimensions first for t-SNE (standard practice, and
    several times faster on 128-d or wider features)."""
    x = np.asarray(features, dtype=np.float32)
    m = x.shape[0]
    if m < 3:
        return np.zeros((m, 2), dtype=np.float32)
    if params.method == "tsne":
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        if x.shape[1] > 50 and m > 50:
            x = PCA(n_components=50, random_state=params.seed).fit_transform(x)
        perplexity = float(min(params.perplexity, max(1.0, (m - 1) / 3.0)))
        out = TSNE(
            n_components=2,
            perplexity=perplexity,
            init="pca",
            learning_rate="auto",
            random_state=params.seed,
            n_jobs=1,
        ).fit_transform(x)
    elif params.method == "umap":
        import umap

        n_neighbors = int(min(params.n_neighbors, m - 1))
        out = umap.UMAP(
            n_components=2,
            n_neighbors=n_neighbors,
            min_dist=params.min_dist,
            random_state=params.seed,
            n_jobs=1,
        ).fit_transform(x)
    else:
        raise ValueError(f"unknown projection {params.method!r}; valid: {', '.join(METHODS)}")
    return np.asarray(out, dtype=np.float32)


def load(cache_dir: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(positions, coords) from the cache, or None (missing or unreadable)."""
    try:
        with np.load(cache_file(cache_dir, key), allow_pickle=False) as data:
            return data["positions"], data["coords"]
    except Exception:  # missing, torn or foreign file: recompute
        return None


def save(cache_dir: Path, key: str, positions: np.ndarray, coords: np.ndarray) -> Path:
    path = cache_file(cache_dir, key)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, positions=positions, coords=coords)
    return path


def load_or_compute(
    cache_dir: Path, fingerprint: dict[str, int], features: np.ndarray, params: ProjectionParams
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(positions, coords, from_cache). A cache folder that cannot be written (read-only
    checkout) costs only the reuse, never the projection."""
    key = cache_key(fingerprint, params)
    hit = load(cache_dir, key)
    if hit is not None:
        return hit[0], hit[1], True
    positions = subsample_positions(len(features), params.subsample, params.seed)
    coords = compute(features[positions], params)
    with contextlib.suppress(OSError):
        save(cache_dir, key, positions, coords)
    return positions, coords, False
