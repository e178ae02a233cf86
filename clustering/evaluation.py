"""Evaluation: embed a data set with a model, score the clusters, re-evaluate a saved run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from clustering import distributed, head_refit
from clustering.augment import to_float
from clustering.checkpoint import load_checkpoint
from clustering.data import DataSet, load_dataset
from clustering.errors import ConfigError
from clustering.metrics import evaluate
from clustering.models import ClusterModel
from clustering.umap_gmm import too_small as umap_gmm_too_small


@torch.no_grad()
def embed(model: ClusterModel, inputs: Tensor, device: torch.device, batch_size: int = 1024,
          amp: bool = False, amp_dtype: torch.dtype | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Run the model over all ``inputs`` without augmentation.

    Returns numpy arrays: ``probs`` (N, C), ``z`` (N, d) L2-normalised, ``h`` (N, F).
    """
    was_training = model.training
    model.eval()
    probs, zs, hs = [], [], []
    try:
        for start in range(0, len(inputs), batch_size):
            x = inputs[start : start + batch_size].to(device, non_blocking=True)
            x = to_float(x) if x.dtype == torch.uint8 else x.float()
            with torch.autocast(device.type, enabled=amp, dtype=amp_dtype):
                out = model(x)
            probs.append(out.probs.float().cpu())
            zs.append(nn.functional.normalize(out.z.float(), dim=1).cpu())
            hs.append(out.h.float().cpu())
    finally:
        model.train(was_training)
    return {"probs": torch.cat(probs).numpy(), "z": torch.cat(zs).numpy(), "h": torch.cat(hs).numpy()}


def embed_all(model: ClusterModel, inputs: Tensor, device: torch.device, batch_size: int = 1024,
              amp: bool = False, amp_dtype: torch.dtype | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """:func:`embed` over the whole data set, sharded over DDP processes and gathered on every rank.

    Each process embeds a contiguous part; every rank gets all rows in data-set order (methods'
    epoch hooks, e.g. GCC's graph, need them on every rank). Plain ``embed`` in one process.
    """
    lo, hi = distributed.shard_range(len(inputs))
    emb = embed(model, inputs[lo:hi], device, batch_size, amp, amp_dtype)
    return {key: distributed.gather_rows(value, len(inputs)) for key, value in emb.items()}


def evaluation_row(data: DataSet, emb: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metrics of the argmax clusters, and the per-sample arrays of ``predictions.npz``."""
    probs = emb["probs"]
    preds = probs.argmax(axis=1)
    metrics = evaluate(data.labels, preds, probs)
    predictions = {
        "index": np.arange(len(preds)),
        "cluster": preds.astype(np.int32),
        "confidence": probs.max(axis=1).astype(np.float32),
        "label": (data.labels if data.labels is not None else np.full(len(preds), -1)).astype(np.int32),
        "probs": probs.astype(np.float32),
        "z": emb["z"].astype(np.float16),
        "h": emb["h"].astype(np.float16),
    }
    return metrics, predictions


def evaluate_run(run_dir: Path, split: str | None = None, which: str = "best", root: str | None = None,
                 device: str = "auto", refit_head: bool = False, split_merge: bool = False,
                 kmeans_restarts: int = 0, umap_gmm: bool | str = False) -> dict[str, Any]:  # fmt: skip
    """Re-evaluate a run's checkpoint, optionally on another split (inductive evaluation).

    ``refit_head``: first refit the checkpoint's head on the evaluated data's own features
    (:mod:`clustering.head_refit`; the checkpoint file is not changed), e.g. to see what the refit
    gives a run made without it. The metrics are then the refitted head's, with ``refit_moved``,
    ``refit_iterations`` and the head's own metrics as trained under ``as_trained``. ``split_merge``:
    the end-of-run split-and-merge moves (:mod:`clustering.split_merge`, after the refit if both),
    with ``split_merge_moves``; when no move pays and there is no refit, the head is as trained.
    ``kmeans_restarts``: that many k-means++ restarts against the head's partition, between the two
    (:mod:`clustering.kmeans_restarts`, starts drawn from the run's seed), with ``restarts_won``.
    ``umap_gmm``: the partition of UMAP + GMM on the features replaces the head's first, in place of
    the refit (:mod:`clustering.umap_gmm`, from the run's seed), with ``umap_gmm_kept``; "if_uneven"
    (UCCC's default in training): only where the head's largest cluster holds more than 1.3 times the
    mean, else the other steps asked for (``head_refit.end_steps``), with ``largest_over_mean_at_end``."""
    from clustering.runs import checkpoint_path
    from clustering.setup import build_method, load_run_config, pick_device

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    path = checkpoint_path(run_dir, which) or checkpoint_path(run_dir, "last")
    if path is None:
        raise ConfigError(f"{str(run_dir)!r} has no checkpoint to evaluate")
    dev = pick_device(device)
    ckpt = load_checkpoint(path, map_location=dev)
    data = load_dataset(config.dataset, root or config.root, split or config.split, config.image_size,
                        label_column=config.label_column, num_clusters=config.num_clusters)
    method = build_method(config, data, dev)
    try:
        method.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ConfigError(f"checkpoint {str(path)!r} does not match the run's config: {str(exc)[:300]}") from None
    emb = embed(method.model, data.inputs, dev, config.eval_batch_size)
    metrics, _ = evaluation_row(data, emb)
    if kmeans_restarts < 0:
        raise ConfigError(f"kmeans_restarts must be >= 0 (0: none), got {kmeans_restarts}")
    if umap_gmm and (why_small := umap_gmm_too_small(len(data), emb["probs"].shape[1])):
        raise ConfigError(f"umap_gmm: {why_small}")
    if refit_head or split_merge or kmeans_restarts or umap_gmm:
        why_not = head_refit.refittable(method.model.cluster_head)
        if why_not is not None:
            raise ConfigError(f"cannot refit the head of {str(run_dir)!r}: {why_not}")
        steps, decided = head_refit.end_steps(emb["probs"], lloyd=refit_head, split_merge=split_merge,
                                              restarts=kmeans_restarts, umap_gmm=umap_gmm)  # fmt: skip
        notes = head_refit.refit_head(method.model.cluster_head, torch.from_numpy(emb["h"]), **steps,
                                      generator=torch.Generator().manual_seed(config.seed),
                                      seed=config.seed) | decided  # fmt: skip
        if "refit_moved" in notes:  # the head was rewritten
            as_trained = {k: metrics[k] for k in ("acc", "nmi", "ari", "jsd", "confidence", "n_nonempty")}
            metrics, _ = evaluation_row(data, embed(method.model, data.inputs, dev, config.eval_batch_size))
            metrics["as_trained"] = as_trained
        metrics.update(notes)
    metrics.update(checkpoint=str(path), split=split or config.split, epoch=ckpt["epoch"], step=ckpt["step"],
                   num_samples=len(data))  # fmt: skip
    return metrics
