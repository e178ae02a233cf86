"""2-D projections (t-SNE, UMAP) of a run's embeddings: the run's own, or computed and cached.

A run writes its maps when it ends (:mod:`clustering.projections`); the page uses them when the
parameters are the run's. Anything else is computed here.

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

from clustering import projections
from clustering.runs import atomic_path

METHODS = projections.METHODS
SOURCES = projections.SOURCES
DEFAULTS = projections.DEFAULTS  # the parameters of a run's own maps


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
    """(m, d) -> (m, 2) float32 by :func:`clustering.projections.compute` (one thread: the studio
    shares the machine with training runs)."""
    return projections.compute(features, params.method, perplexity=params.perplexity, n_neighbors=params.n_neighbors,
                               min_dist=params.min_dist, seed=params.seed)  # fmt: skip


def run_projection(run_dir: Path, step: int | None, params: ProjectionParams,
                   n: int) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """(positions, coords) of every sample from the map the run wrote itself when it ended, when
    ``params`` are the ones it used (:data:`clustering.projections.DEFAULTS`) and it was computed
    at the evaluation the predictions are from; else None."""
    wanted = {"perplexity": params.perplexity, "seed": params.seed} if params.method == "tsne" else {
        "n_neighbors": params.n_neighbors, "min_dist": params.min_dist, "seed": params.seed}  # fmt: skip
    if any(projections.DEFAULTS[k] != v for k, v in wanted.items()):
        return None
    coords = projections.read_run_projection(run_dir, params.method, params.source, step)
    if coords is None or len(coords) != n:
        return None
    return np.arange(n), coords


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
