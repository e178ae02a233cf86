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
    """LNSCC's objective per named option set (``clustering.bench.lnscc_ceiling.CONFIGS``) and seed:
    over a free embedding table (what the objective gives without network or budget; ``--steps``)
    and, with ``--minutes``, the network itself trained on the same options (how far the MLP
    falls short of its own objective)."""
    from clustering.bench.lnscc_ceiling import config_params, free_embedding_ceiling, knn_label_agreement
    from clustering.methods import get_method, resolve_params
    from clustering.methods.lnscc import graph_inputs

    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    try:
        params_of = {name: resolve_params(get_method("lnscc"), config_params(name)) for name in names}
    except ValueError as exc:
        raise UserError(str(exc)) from None
    data = load_native(args.dataset, args.root)
    x, labels = graph_inputs(data.inputs), np.asarray(data.labels)
    if labels.min() < 0:
        raise UserError(f"bench lnscc-ceiling needs labels; data set {args.dataset!r} has none")
    print(f"{args.dataset}: {x.shape[0]} x {x.shape[1]} inputs, their own 10-NN label agreement "
          f"{knn_label_agreement(x, labels):.3f}", flush=True)  # fmt: skip
    rows: list[dict[str, Any]] = []
    if args.steps > 0:
        for name in names:
            for seed in range(args.seeds):
                found = free_embedding_ceiling(x, labels, data.num_classes, params_of[name], steps=args.steps,
                                               pairs_per_step=args.pairs, lr=args.lr, dim=args.dim,
                                               seed=seed)  # fmt: skip
                for row in found:
                    rows.append({"dataset": args.dataset, "config": name, "model": "table", "seed": seed, **row})
                    print(" ".join(f"{k}={fmt(v)}" for k, v in rows[-1].items()), flush=True)
    if args.minutes > 0:
        jobs = [Job(args.dataset, "lnscc", seed, name, config_params(name), {}) for name in names
                for seed in range(args.seeds)]  # fmt: skip
        run_args = argparse.Namespace(root=args.root, image_size=None, minutes=args.minutes, epochs=None,
                                      results=args.results, threads=args.threads, eval_every=args.eval_every,
                                      jobs=args.jobs)  # fmt: skip

        def network_row(row: dict[str, Any]) -> None:
            z = np.asarray(np.load(Path(row["run_dir"]) / "predictions.npz")["z"], dtype=np.float32)
            from sklearn.cluster import KMeans

            from clustering.metrics import evaluate

            kmeans = evaluate(labels, KMeans(data.num_classes, n_init=3, random_state=0).fit_predict(z))
            rows.append({"dataset": args.dataset, "config": row["config"], "model": "network", "seed": row["seed"],
                         "step": row.get("epochs"), "acc": row["acc"], "nmi": row["nmi"],
                         "kmeans_z_acc": kmeans["acc"], "seconds": row["seconds"]})  # fmt: skip
            print(" ".join(f"{k}={fmt(v)}" for k, v in rows[-1].items()), flush=True)

        run_jobs(jobs, run_args, lambda _: data, network_row)
    columns = ("dataset", "config", "model", "seed", "step", "loss", "acc", "nmi", "kmeans_z_acc", "knn_agreement",
               "seconds")  # fmt: skip
    text = f"## LNSCC's objective per option set on {args.dataset} (table: {args.dim}-d free table; network: " \
           f"{args.minutes} min)\n\n{markdown(rows, columns)}\n"  # fmt: skip
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
