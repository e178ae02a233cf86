"""Experiments: ``bench lnscc-ceiling`` (LNSCC's objective over a free table) and ``bench degeneracy``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from clustering.bench.runner import Job, load_native, run_jobs
from clustering.bench.tables import fmt, markdown, print_row, save_table
from clustering.errors import UserError


def cmd_lnscc_ceiling(args: argparse.Namespace) -> int:
    """LNSCC's pair objective over a free embedding table (``clustering.bench.lnscc_ceiling``), per
    E^{im-} scale and seed: the k-means ACC the objective gives without network or budget."""
    from clustering.bench.lnscc_ceiling import free_embedding_ceiling, knn_label_agreement
    from clustering.methods import get_method, resolve_params
    from clustering.methods.lnscc import graph_inputs

    data = load_native(args.dataset, args.root)
    x, labels = graph_inputs(data.inputs), np.asarray(data.labels)
    if labels.min() < 0:
        raise UserError(f"bench lnscc-ceiling needs labels; data set {args.dataset!r} has none")
    print(f"{args.dataset}: {x.shape[0]} x {x.shape[1]} inputs, their own 10-NN label agreement "
          f"{knn_label_agreement(x, labels):.3f}", flush=True)  # fmt: skip
    rows = []
    for scale in [float(v) for v in args.im_neg_scales.split(",") if v]:
        params = resolve_params(get_method("lnscc"), {"im_neg_scale": scale})
        for seed in range(args.seeds):
            found = free_embedding_ceiling(x, labels, data.num_classes, params, steps=args.steps,
                                           pairs_per_step=args.pairs, lr=args.lr, dim=args.dim, seed=seed)  # fmt: skip
            for row in found:
                rows.append({"dataset": args.dataset, "im_neg_scale": scale, "seed": seed, **row})
                print(" ".join(f"{k}={fmt(v)}" for k, v in rows[-1].items()), flush=True)
    columns = ("dataset", "im_neg_scale", "seed", "step", "loss", "acc", "nmi", "knn_agreement", "seconds")
    text = f"## LNSCC's pair objective over a free {args.dim}-d table on {args.dataset}\n\n{markdown(rows, columns)}\n"
    save_table(Path(args.results), args.name or "lnscc_ceiling", rows, list(columns), text)
    return 0


DEGENERACY_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "uccc": ("uccc", {}),
    "cc-no-entropy": ("cc", {"entropy": False}),
    "cc": ("cc", {}),
}
DEGENERACY_KEYS = ("acc", "jsd", "n_nonempty", "confidence")


def degeneracy_table(curves: dict[str, list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """Wide per-epoch table: one row per evaluated epoch, ACC / JSD / non-empty clusters per
    variant (means over seeds), from each variant's metrics rows (tagged with ``seed``)."""
    epochs = sorted({r["epoch"] for rows in curves.values() for r in rows if isinstance(r.get("epoch"), int)})
    columns: tuple[str, ...] = ("epoch",)
    for label in curves:
        columns += (f"{label} acc", f"{label} jsd", f"{label} nonempty")
    table = []
    for epoch in epochs:
        row: dict[str, Any] = {"epoch": epoch}
        for label, rows in curves.items():
            at = [r for r in rows if r.get("epoch") == epoch]
            for key, col in (("acc", "acc"), ("jsd", "jsd"), ("n_nonempty", "nonempty")):
                vals = [r[key] for r in at if isinstance(r.get(key), (int, float))]
                mean = float(np.mean(vals)) if vals else None
                if key == "n_nonempty" and mean is not None and mean.is_integer():
                    mean = int(mean)  # a count, printed as one
                row[f"{label} {col}"] = mean
        table.append(row)
    return table, columns


def cmd_degeneracy(args: argparse.Namespace) -> int:
    """UCCC vs CC without its entropy term (UCCC paper, Fig. 3): per-epoch ACC, JSD and number of
    non-empty clusters, read back from every run's metrics.jsonl."""
    from clustering.runs import read_metrics

    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in DEGENERACY_VARIANTS]
    if unknown:
        raise UserError(f"unknown variant(s) {unknown}; valid: {', '.join(DEGENERACY_VARIANTS)}")
    data = load_native(args.dataset, args.root)
    jobs = [Job(args.dataset, DEGENERACY_VARIANTS[label][0], seed, label, DEGENERACY_VARIANTS[label][1], {})
            for label in variants for seed in range(args.seeds)]  # fmt: skip

    curves: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
    long_rows = []
    for job, result in zip(jobs, run_jobs(jobs, args, lambda _: data, print_row), strict=True):
        for r in read_metrics(Path(result["run_dir"])):
            row = {"variant": job.label, "method": job.method, "seed": job.seed, "epoch": r.get("epoch"),
                   "step": r.get("step"), **{k: r.get(k) for k in DEGENERACY_KEYS}}  # fmt: skip
            curves[job.label].append(row)
            long_rows.append(row)
    table, columns = degeneracy_table(curves)
    text = (f"## degeneracy on {args.dataset}: per-epoch mean over {args.seeds} seed(s)\n\n"
            f"{markdown(table, columns)}\n")  # fmt: skip
    save_table(Path(args.results), args.name or "degeneracy", long_rows,
               ["variant", "method", "seed", "epoch", "step", *DEGENERACY_KEYS], text)  # fmt: skip
    return 0
