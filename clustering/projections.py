"""2-D maps (t-SNE, UMAP) of a run's embeddings: computed here, by the run or by the studio.

A run writes ``projections/<method>-<source>.npz`` for every sample when it ends
(``TrainConfig.projections``), so the studio opens its map without computing anything. Each file
carries the evaluation step it was computed at; a later evaluation (a resumed run) makes it stale
and readers ignore it.

t-SNE uses openTSNE's FFT-accelerated gradients when it is installed (several times faster than
scikit-learn's Barnes-Hut above a few thousand points: 7.9x on 60,000, ``python -m app.bench
--libraries 60000``), and scikit-learn's otherwise; UMAP is umap-learn's. On a GPU machine with
RAPIDS cuML installed (not a dependency: it comes from NVIDIA's own channels), both are cuML's.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from clustering.runs import atomic_path

METHODS = ("tsne", "umap")
SOURCES = ("z", "h", "probs")
PROJECTIONS_DIR = "projections"
#: ``TrainConfig.projections`` values -> the maps a run writes when it ends.
RUN_CHOICES = {"umap+tsne": ("umap", "tsne"), "umap": ("umap",), "tsne": ("tsne",), "none": ()}
#: The parameters a run's own maps use (the studio's defaults, so they are reused as they are).
DEFAULTS: dict[str, Any] = {"perplexity": 30.0, "n_neighbors": 15, "min_dist": 0.1, "seed": 0}


def cuml_usable() -> bool:
    """Whether RAPIDS cuML is installed and a CUDA device is there to run it."""
    try:
        import cuml  # noqa: F401
    except ImportError:
        return False
    import torch

    return torch.cuda.is_available()


def tsne_backend() -> str:
    """``cuml`` on a GPU machine with RAPIDS cuML installed, else ``opentsne`` when openTSNE is
    importable, else ``sklearn``."""
    if cuml_usable():
        return "cuml"
    try:
        import openTSNE  # noqa: F401
    except ImportError:
        return "sklearn"
    return "opentsne"


def umap_backend() -> str:
    """``cuml`` on a GPU machine with RAPIDS cuML installed, else ``umap-learn``."""
    return "cuml" if cuml_usable() else "umap-learn"


def compute(features: np.ndarray, method: str, *, perplexity: float = 30.0, n_neighbors: int = 15,
            min_dist: float = 0.1, seed: int = 0, threads: int = 1,
            backend: str | None = None) -> np.ndarray:  # fmt: skip
    """(m, d) -> (m, 2) float32. For t-SNE, PCA to 50 dimensions first (standard practice, and
    several times faster on 128-d or wider features). ``backend``: t-SNE ``cuml``, ``opentsne`` or
    ``sklearn``, UMAP ``cuml`` or ``umap-learn``; None picks the fastest usable
    (:func:`tsne_backend`, :func:`umap_backend`)."""
    x = np.asarray(features, dtype=np.float32)
    m = x.shape[0]
    if m < 3:
        return np.zeros((m, 2), dtype=np.float32)
    if method == "tsne":
        from sklearn.decomposition import PCA

        if x.shape[1] > 50 and m > 50:
            x = PCA(n_components=50, random_state=seed).fit_transform(x).astype(np.float32)
        perplexity = float(min(perplexity, max(1.0, (m - 1) / 3.0)))
        chosen = backend or tsne_backend()
        if chosen == "cuml":  # FFT t-SNE on the GPU (its init is random: cuML's default)
            from cuml.manifold import TSNE as CumlTSNE

            out = CumlTSNE(n_components=2, perplexity=perplexity, method="fft", random_state=seed,
                           output_type="numpy").fit_transform(x)  # fmt: skip
        elif chosen == "opentsne":
            import openTSNE

            out = openTSNE.TSNE(perplexity=perplexity, initialization="pca", random_state=seed,
                                n_jobs=threads, verbose=False).fit(x)  # fmt: skip
        else:
            from sklearn.manifold import TSNE

            out = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                       random_state=seed, n_jobs=threads).fit_transform(x)  # fmt: skip
    elif method == "umap" and (backend or umap_backend()) == "cuml":
        from cuml.manifold import UMAP as CumlUMAP

        out = CumlUMAP(n_components=2, n_neighbors=int(min(n_neighbors, m - 1)), min_dist=min_dist,
                       random_state=seed, output_type="numpy").fit_transform(x)  # fmt: skip
    elif method == "umap":
        import umap

        out = umap.UMAP(n_components=2, n_neighbors=int(min(n_neighbors, m - 1)), min_dist=min_dist,
                        random_state=seed, n_jobs=threads).fit_transform(x)  # fmt: skip
    else:
        raise ValueError(f"unknown projection {method!r}; valid: {', '.join(METHODS)}")
    return np.asarray(out, dtype=np.float32)


def projection_path(run_dir: Path, method: str, source: str = "z") -> Path:
    return Path(run_dir) / PROJECTIONS_DIR / f"{method}-{source}.npz"


def read_run_projection(run_dir: Path, method: str, source: str, step: int | None) -> np.ndarray | None:
    """The run's own (N, 2) map of ``source`` by ``method`` at evaluation ``step``, or None
    (missing, unreadable, or computed at another evaluation)."""
    try:
        with np.load(projection_path(run_dir, method, source), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            coords = data["coords"]
    except Exception:  # missing, torn or foreign file: none
        return None
    if step is None or meta.get("step") != int(step):
        return None
    return coords


def write_run_projections(run_dir: Path, methods: tuple[str, ...], threads: int = 1,
                          log: Any = print) -> dict[str, float]:  # fmt: skip
    """Compute each of ``methods`` on the run's latest ``z`` and write it; returns seconds per map.
    A map that fails is reported and skipped: the run itself is already written."""
    from clustering.runs import read_predictions

    arrays = read_predictions(Path(run_dir))
    if arrays is None or "z" not in arrays or "step" not in arrays:
        return {}
    z, step = np.asarray(arrays["z"], dtype=np.float32), int(arrays["step"])
    seconds = {}
    for method in methods:
        log(f"projections: {method} of z ({len(z):,} points)…")
        start = time.time()
        try:
            coords = compute(z, method, threads=threads, **DEFAULTS)
        except Exception as exc:  # noqa: BLE001 - a map is a convenience; never fail a finished run
            log(f"projections: {method} failed ({type(exc).__name__}: {exc}); the studio computes it on demand")
            continue
        elapsed = round(time.time() - start, 2)
        backend = tsne_backend() if method == "tsne" else umap_backend()
        with contextlib.suppress(OSError):
            save_run_projection(run_dir, method, "z", coords, step, backend=backend, seconds=elapsed)
        seconds[method] = elapsed
        log(f"projections: {method} written in {elapsed:.1f} s")
    return seconds


def save_run_projection(run_dir: Path, method: str, source: str, coords: np.ndarray, step: int,
                        **meta: Any) -> Path:  # fmt: skip
    """Write one map with what identifies it (evaluation step, method, source, parameters)."""
    path = projection_path(run_dir, method, source)
    info = {"step": int(step), "method": method, "source": source, **DEFAULTS, **meta}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, coords=np.asarray(coords, dtype=np.float32), meta=np.array(json.dumps(info)))
    return path


class _Interrupted(Exception):
    pass


def write_projections_after_run(run_dir: Path, exit_after: bool = False) -> None:
    """The maps of ``config.projections``, once everything else of the run is written: a failure
    or a Ctrl-C here costs the studio's instant map, never the run. ``status.json`` says
    ``projections: computing / done / interrupted`` meanwhile, for the studio."""
    from clustering.runs import RunWriter, read_config

    config = read_config(run_dir) or {}
    methods = RUN_CHOICES.get(str(config.get("projections", "none")), ())
    if not methods:
        return
    writer = RunWriter(run_dir)
    previous = {}
    if exit_after and threading.current_thread() is threading.main_thread():
        # The CLI ignores signals once the run is written (clustering.train); here they end the
        # maps early instead, and the process exits 0.
        def interrupt(signum: int, _frame: Any) -> None:
            raise _Interrupted

        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    writer.annotate(projections="computing")
    try:
        write_run_projections(run_dir, methods, threads=int(config.get("threads") or 1))
        writer.annotate(projections="done")
    except (_Interrupted, KeyboardInterrupt):
        print("projections: interrupted; the studio computes the maps on demand", flush=True)
        writer.annotate(projections="interrupted")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
