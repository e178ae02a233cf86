"""Fabricated run directories (for tests and the benchmark): the run-directory contract with
plausible content, without training anything.

Embeddings are noisy points around ``num_clusters`` random directions on the unit sphere, the
probabilities a softmax of their similarity to those directions, and labels the true direction
(with some noise), so every view has structure to show.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from clustering.projections import save_run_projection
from clustering.runs import RunWriter


def fabricate_predictions(
    n: int,
    num_clusters: int = 10,
    dim: int = 128,
    feat_dim: int = 64,
    labels: bool = True,
    seed: int = 0,
    noise: float = 0.9,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_clusters, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    truth = rng.integers(0, num_clusters, size=n)
    z = centers[truth] + noise * rng.normal(size=(n, dim)) / np.sqrt(dim) * 4
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    logits = 12.0 * z @ centers.T
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    # Cluster ids are a permutation of the true classes, so the Hungarian mapping has work to do.
    perm = rng.permutation(num_clusters)
    probs = probs[:, np.argsort(perm)]
    cluster = probs.argmax(axis=1)
    h = rng.normal(size=(n, feat_dim)) + np.eye(num_clusters, feat_dim)[truth] * 3
    label = truth.copy()
    flip = rng.random(n) < 0.05
    label[flip] = rng.integers(0, num_clusters, size=int(flip.sum()))
    return {
        "index": np.arange(n),
        "cluster": cluster.astype(np.int32),
        "confidence": probs.max(axis=1).astype(np.float32),
        "label": (label if labels else np.full(n, -1)).astype(np.int32),
        "probs": probs.astype(np.float32),
        "z": z.astype(np.float16),
        "h": h.astype(np.float16),
    }


def fabricate_history(run_dir: Path, predictions: dict[str, np.ndarray], done: int, seed: int) -> None:
    """A plausible ``history.bin`` for epochs 1..done: everything in cluster 0 for two epochs (the
    near-collapse of :func:`fabricate_metrics`), then each image wanders until an epoch of its own
    and stays in its final cluster from there; confidence rises over the run."""
    rng = np.random.default_rng(seed + 1)
    final = predictions["cluster"].astype(np.int64)
    n, width = len(final), int(final.max(initial=0)) + 1
    settle = rng.integers(3, max(4, int(done * 0.7) + 1), size=n)
    writer = RunWriter(run_dir)
    for e in range(1, done + 1):
        if e < 3:
            cluster = np.zeros(n, dtype=np.int64)
        else:
            wander = rng.random(n) < 0.5
            cluster = np.where((e >= settle) | ~wander, final, rng.integers(0, width, size=n))
        confidence = np.clip(predictions["confidence"] * e / done + 0.05 * rng.random(n), 0, 1)
        writer.append_history(e * 7, e, cluster, confidence)


def fabricate_metrics(n: int, num_clusters: int, epochs: int, done: int, start: float, labels: bool,
                      seed: int) -> list[dict[str, Any]]:  # fmt: skip
    """Plausible ``metrics.jsonl`` rows for epochs 1..done of ``epochs``: losses falling, ACC and
    confidence rising, and an early near-collapse (every image in one cluster), as real runs show."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(1, done + 1):
        frac = e / epochs
        sizes = np.full(num_clusters, n // num_clusters)
        if e < 3:
            sizes = np.zeros(num_clusters, dtype=int)
            sizes[0] = n
        row = {
            "epoch": e,
            "step": e * 7,
            "time": start + 60 * e,
            "elapsed": 60.0 * e,
            "lr": 3e-4,
            "loss": 9.5 - 3 * frac + 0.05 * rng.random(),
            "loss_ins": 5.8 - frac,
            "loss_clu": 3.7 - 2 * frac,
            "confidence": 0.1 + 0.85 * frac,
            "n_nonempty": int((sizes > 0).sum()),
            "cluster_sizes": sizes.tolist(),
        }
        if labels:
            row.update(acc=0.1 + 0.8 * frac, nmi=0.8 * frac, ari=0.75 * frac, jsd=0.6 * (1 - frac))
        rows.append(row)
    return rows


def fabricate_run(
    run_dir: Path,
    *,
    n: int = 500,
    num_clusters: int = 10,
    dataset: str = "digits",
    root: str | None = None,
    labels: bool = True,
    state: str = "finished",
    epochs: int = 12,
    predictions: bool = True,
    torn_metrics: bool = False,
    method: str = "uccc",
    image_size: int | None = 16,
    seed: int = 0,
    alive_pid: bool = False,
    history: bool = True,
    own_maps: tuple[str, ...] = (),
) -> Path:
    """Write a run directory. ``state="running"`` with ``alive_pid`` uses this process's pid so
    readers see a live run (not "stale"); ``torn_metrics`` leaves a half-written last line;
    ``history=False`` leaves out ``history.bin``, as runs from before it existed; ``own_maps``
    ("tsne", "umap") adds the projections a run writes when it ends."""
    run_dir = Path(run_dir)
    writer = RunWriter(run_dir)
    config: dict[str, Any] = {
        "method": method,
        "dataset": dataset,
        "root": root,
        "split": "both",
        "image_size": image_size,
        "backbone": "cnn",
        "num_clusters": num_clusters,
        "epochs": epochs,
        "minutes": None,
        "batch_size": 256,
        "lr": 3e-4,
        "seed": seed,
        "device": "cpu",
        "method_params": {
            "variant": "cosine",
            "cluster_temperature": 0.3,
            "instance_temperature": 0.5,
            "khop": 2,
            "tolerance": 4.0,
            "pos_conf": None,
            "neg_conf": 0.0,
        },
        "out": str(run_dir.parent),
        "run_id": run_dir.name,
        "world_size": 1,
        "versions": {},
    }
    writer.write_config(config)
    start = time.time() - 60 * epochs
    done = epochs if state != "running" else max(1, epochs // 2)
    for row in fabricate_metrics(n, num_clusters, epochs, done, start, labels, seed):
        writer.append_metrics(row)
    if torn_metrics:
        with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write('{"epoch": 99, "step": 9')
    if predictions:
        arrays = fabricate_predictions(n, num_clusters, labels=labels, seed=seed) | {"step": np.int64(done * 7)}
        writer.write_predictions(**arrays)
        if history:
            fabricate_history(run_dir, arrays, done, seed)
        if own_maps:  # the maps a run writes when it ends: here random points, computed by no one
            for method in own_maps:
                coords = np.random.default_rng(seed).normal(size=(n, 2))
                save_run_projection(run_dir, method, "z", coords, int(arrays["step"]), backend="fabricated")
    status = {
        "state": state,
        "pid": os.getpid() if alive_pid else 999_999_999,
        "heartbeat": time.time(),
        "started": start,
        "step": done * 7,
        "epoch": done,
        "epoch_progress": 0.4,
    }
    if state in ("finished", "stopped", "failed"):
        status["ended"] = time.time()
    if state == "failed":
        status["error"] = "FloatingPointError: loss became nan at step 42 (epoch 6)"
    (run_dir / "status.json").write_text(json.dumps(status), encoding="utf-8")
    return run_dir
