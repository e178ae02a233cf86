"""Benchmarks that print their figures: ``python -m clustering bench quality|ablation|speed ...``."""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from clustering.errors import UserError

TABLE_COLUMNS = ("dataset", "method", "config", "seed", "seconds", "epochs", "acc", "nmi", "ari", "jsd", "n_nonempty")


# ----------------------------------------------------------------------------- raw-pixel baselines


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


# ----------------------------------------------------------------------------- training runs


@dataclass(frozen=True)
class DataRef:
    """A data set of a benchmark: the name shown in tables, the source that loads it, its root."""

    label: str
    source: str
    root: str | None


def data_refs(datasets: str, root: str | None) -> list[DataRef]:
    """``--datasets`` entries: registered names (``--root`` for those that need files), folders
    (an ImageFolder each, shown by its folder name), or ``suite`` (the development suite)."""
    from clustering.data import get_source, source_names
    from clustering.data.suite import SUITE

    refs = []
    entries = [e.strip() for e in datasets.split(",")]
    entries = [name for e in entries for name in (SUITE if e == "suite" else (e,))]
    for entry in entries:
        if not entry:
            continue
        if entry in source_names():
            refs.append(DataRef(entry, entry, root if get_source(entry).needs_root else None))
        elif Path(entry).expanduser().is_dir():
            refs.append(DataRef(Path(entry).expanduser().resolve().name, "imagefolder", str(Path(entry).expanduser())))
        else:
            raise UserError(f"--datasets entry {entry!r} is neither a data source ({', '.join(source_names())}) "
                            "nor a folder")
    return refs


@dataclass
class Job:
    dataset: str
    method: str
    seed: int
    label: str
    params: dict[str, Any]
    extra: dict[str, Any]
    data: DataRef | None = None  # None: ``dataset`` is a registered source read from ``--root``


def run_job(job: Job, args: argparse.Namespace, data) -> dict[str, Any]:  # noqa: ANN001
    from clustering.config import TrainConfig
    from clustering.train import train

    ref = job.data or DataRef(job.dataset, job.dataset, args.root)
    config = TrainConfig(method=job.method, dataset=ref.source, root=ref.root, image_size=args.image_size,
                         seed=job.seed, minutes=args.minutes, epochs=args.epochs, out=str(Path(args.results) / "runs"),
                         threads=args.threads, method_params=dict(job.params), eval_every=args.eval_every,
                         **job.extra)  # fmt: skip
    start = time.time()
    result = train(config, progress=False, data=data)
    if result.state == "stopped":  # SIGTERM/Ctrl-C stops the run cleanly; stop the whole benchmark too
        raise KeyboardInterrupt(f"benchmark stopped during {result.run_dir}")
    m = result.metrics
    return {"dataset": job.dataset, "method": job.method, "config": job.label, "seed": job.seed,
            "seconds": time.time() - start, "epochs": result.epoch,
            **{k: m.get(k) for k in ("acc", "nmi", "ari", "jsd", "n_nonempty")},
            "run_dir": str(result.run_dir)}  # fmt: skip


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset), which can be
    fewer than the machine's ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@lru_cache(maxsize=4)
def _worker_data(source: str, root: str | None):  # noqa: ANN202
    """A worker process's training data (native size), loaded once per process and data set."""
    return _load(source, root)


def _run_job_in_worker(job: Job, args: argparse.Namespace) -> dict[str, Any]:
    ref = job.data or DataRef(job.dataset, job.dataset, args.root)
    return run_job(job, args, _worker_data(ref.source, ref.root))


def run_jobs(jobs: list[Job], args: argparse.Namespace, data_for: Callable[[str], Any],
             on_row: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:  # fmt: skip
    """Run training jobs one after another (``args.jobs`` = 1) or in that many worker processes.

    Each finished job's row goes to ``on_row`` as soon as it is known (completion order); the
    returned rows keep the jobs' order. Workers train with ``args.threads`` threads each, by
    default the machine's cores shared out, so two jobs on two cores do not fight over them.
    Ctrl-C or SIGTERM stops every worker cleanly (each run keeps its last checkpoint) and
    raises KeyboardInterrupt after ``on_row`` has seen every row finished so far.
    """
    workers = getattr(args, "jobs", 1)
    if workers < 1:
        raise UserError(f"--jobs must be >= 1 (training runs at once), got {workers}")
    if workers == 1 or len(jobs) <= 1:
        rows = []
        for job in jobs:
            rows.append(run_job(job, args, data_for(job.dataset)))
            on_row(rows[-1])
        return rows
    worker_args = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "func"})
    worker_args.threads = args.threads or max(1, usable_cores() // workers)
    # SIGTERM to this process must reach the workers, so turn it into the KeyboardInterrupt below.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"))
    rows: list[dict[str, Any] | None] = [None] * len(jobs)
    waiting = iter(range(len(jobs)))
    in_flight: dict[Future, int] = {}

    def submit_next() -> None:
        # One job per free worker, never more: a job queued ahead could start after a stop.
        index = next(waiting, None)
        if index is not None:
            in_flight[pool.submit(_run_job_in_worker, jobs[index], worker_args)] = index

    try:
        for _ in range(workers):
            submit_next()
        while in_flight:
            done, _ = wait_futures(in_flight, return_when="FIRST_COMPLETED")
            for future in sorted(done, key=in_flight.__getitem__):
                index = in_flight.pop(future)
                rows[index] = future.result()  # a worker's error (or clean stop) is raised here
                on_row(rows[index])
                submit_next()
        return [row for row in rows if row is not None]
    except BaseException:
        # Stop the runs cleanly (SIGTERM: each trainer saves and returns), then end the workers.
        for child in multiprocessing.active_children():
            child.terminate()
        wait_futures(in_flight, timeout=120)
        pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():
            child.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        signal.signal(signal.SIGTERM, previous)


def print_row(row: dict[str, Any]) -> None:
    print(" ".join(f"{k}={_fmt(row.get(k))}" for k in TABLE_COLUMNS), flush=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if value > 2 else f"{value:.3f}"
    return str(value)


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (and std of ACC) over seeds for every (dataset, method, config)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["method"], row["config"]), []).append(row)
    out = []
    for (dataset, method, config), items in groups.items():
        def mean(key: str, items=items) -> float | None:
            vals = [r[key] for r in items if isinstance(r.get(key), (int, float))]
            return float(np.mean(vals)) if vals else None

        accs = [r["acc"] for r in items if isinstance(r.get("acc"), float)]
        out.append({"dataset": dataset, "method": method, "config": config, "seeds": len(items),
                    "seconds": mean("seconds"), "epochs": mean("epochs"), "acc": mean("acc"),
                    "acc_std": float(np.std(accs)) if accs else None, "nmi": mean("nmi"), "ari": mean("ari"),
                    "jsd": mean("jsd"), "n_nonempty": mean("n_nonempty")})  # fmt: skip
    return out


def markdown(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def save_table(results: Path, name: str, rows: list[dict[str, Any]], columns: list[str], text: str,
               echo: bool = True) -> None:  # fmt: skip
    """``name.csv`` (``rows``, these columns) and ``name.md`` (``text``) in ``results``."""
    results.mkdir(parents=True, exist_ok=True)
    with open(results / f"{name}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (results / f"{name}.md").write_text(text)
    if echo:
        print(text, flush=True)


def write_tables(rows: list[dict[str, Any]], results: Path, name: str, echo: bool = True) -> None:
    summary = summarize(rows)
    cols = ("dataset", "method", "config", "seeds", "seconds", "epochs", "acc", "acc_std", "nmi", "ari", "jsd",
            "n_nonempty")  # fmt: skip
    text = f"## per seed\n\n{markdown(rows, TABLE_COLUMNS)}\n\n## mean over seeds\n\n{markdown(summary, cols)}\n"
    save_table(results, name, rows, [*TABLE_COLUMNS, "run_dir"], text, echo)


def _load(dataset: str, root: str | None):  # noqa: ANN202
    """The data set at its native resolution (training resizes it as its config says)."""
    from clustering.data import get_source, load_dataset

    return load_dataset(dataset, root if get_source(dataset).needs_root else None)


def cmd_quality(args: argparse.Namespace) -> int:
    from clustering.methods import get_method

    refs = data_refs(args.datasets, args.root)
    datasets = [ref.label for ref in refs]
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        get_method(m)  # fail fast on unknown names
    seeds = list(range(args.seeds))
    results, name = Path(args.results), args.name or "quality"
    rows: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        """Print a finished row and rewrite the tables, so a stopped benchmark keeps its rows."""
        rows.append(row)
        print_row(row)
        write_tables(rows, results, name, echo=False)

    loaded, baselines = {}, []
    for ref in refs:
        loaded[ref.label] = _load(ref.source, ref.root)
        if not args.no_baselines:  # raw pixels at the data set's own resolution
            for row in baseline_rows(loaded[ref.label], ref.label, seeds):
                add(row)
                baselines.append(row)
    jobs = [Job(ref.label, method, seed, "default", {}, {}, ref) for ref in refs for method in methods
            for seed in seeds]  # fmt: skip
    trained = run_jobs(jobs, args, loaded.__getitem__, add)
    ordered = [r for d in datasets for r in baselines + trained if r["dataset"] == d]
    write_tables(ordered, results, name)
    return 0


ABLATION_GROUPS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "variant": [("paper (literal Eq. 6)", {"variant": "paper"}), ("cosine tau=0.3", {"variant": "cosine"})],
    "temperature": [(f"cosine tau={t}", {"variant": "cosine", "cluster_temperature": t}) for t in (0.2, 0.3, 0.5, 1.0)],
    "khop": [(f"k={k}", {"khop": k}) for k in (1, 2, 3, 4)],
    "tolerance": [(f"t={t}", {"tolerance": float(t)}) for t in (2, 3, 4, 5, 6)],
}


def cmd_ablation(args: argparse.Namespace) -> int:
    groups = [g for g in args.groups.split(",") if g]
    unknown = [g for g in groups if g not in ABLATION_GROUPS]
    if unknown:
        raise UserError(f"unknown ablation group(s) {unknown}; valid: {', '.join(ABLATION_GROUPS)}")
    from clustering.methods import get_method, resolve_params

    data = _load(args.dataset, args.root)
    jobs: list[Job] = []
    # Several groups contain the default configuration (tau 0.3 = k 2 = t 4): train it once.
    seen: set[tuple] = set()
    for group in groups:
        for label, params in ABLATION_GROUPS[group]:
            if args.configs and label not in args.configs.split(","):
                continue
            key = tuple(sorted(vars(resolve_params(get_method("uccc"), params)).items()))
            if key in seen:
                continue
            seen.add(key)
            jobs += [Job(args.dataset, "uccc", seed, label, params, {}) for seed in range(args.seeds)]

    rows = run_jobs(jobs, args, lambda _: data, print_row)
    write_tables(rows, Path(args.results), args.name or "ablation")
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    """Where a training step's time goes: augmentation vs forward/backward/optimiser."""
    import torch

    from clustering.config import TrainConfig
    from clustering.setup import pick_device, prepare_data, resolve_config
    from clustering.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    data = _load(args.dataset, args.root)
    device = pick_device(args.device)
    config = resolve_config(TrainConfig(method=args.method, dataset=args.dataset, backbone=args.backbone,
                                        batch_size=args.batch_size, image_size=args.image_size, amp=args.amp,
                                        channels_last=args.channels_last, device=args.device),
                            data, device.type)  # fmt: skip
    trainer = Trainer(config, prepare_data(config, data), device)
    aug_time = 0.0
    weak = trainer.views.weak

    def timed_weak(x):  # noqa: ANN001, ANN202
        nonlocal aug_time
        t0 = time.perf_counter()
        out = weak(x)
        aug_time += time.perf_counter() - t0
        return out

    trainer.views.weak = timed_weak  # type: ignore[method-assign]
    total = 0.0
    generator = torch.Generator().manual_seed(0)
    for i in range(args.steps + 2):
        idx = torch.randint(0, len(data), (config.batch_size,), generator=generator)
        if i == 2:  # two warm-up steps
            aug_time, total = 0.0, 0.0
        t0 = time.perf_counter()
        trainer.step(idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        total += time.perf_counter() - t0
    steps = args.steps
    per_step = total / steps
    precision = str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32"
    layout = "channels_last" if trainer.channels_last else "contiguous"
    print(f"{args.method} on {args.dataset} ({config.image_size} px), backbone {config.backbone}, "
          f"batch {config.batch_size}, {torch.get_num_threads()} threads, device {device}, {precision}, {layout}")
    print(f"  step            {per_step * 1000:8.1f} ms  ({config.batch_size / per_step:7.0f} images/s)")
    print(f"  augmentation    {aug_time / steps * 1000:8.1f} ms  ({100 * aug_time / total:4.1f}%)")
    print(f"  forward/backward/optimiser {(total - aug_time) / steps * 1000:8.1f} ms  "
          f"({100 * (total - aug_time) / total:4.1f}%)")  # fmt: skip
    print(f"  epoch of {len(data)} samples ~ {per_step * (len(data) // config.batch_size):.1f} s")
    return 0


def cmd_lnscc_ceiling(args: argparse.Namespace) -> int:
    """LNSCC's pair objective over a free embedding table (``clustering.lnscc_ceiling``), per
    E^{im-} scale and seed: the k-means ACC the objective gives without network or budget."""
    from clustering.lnscc_ceiling import free_embedding_ceiling, knn_label_agreement
    from clustering.methods import get_method, resolve_params
    from clustering.methods.lnscc import graph_inputs

    data = _load(args.dataset, args.root)
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
                print(" ".join(f"{k}={_fmt(v)}" for k, v in rows[-1].items()), flush=True)
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
    data = _load(args.dataset, args.root)
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


# ----------------------------------------------------------------------------- distributed (DDP) throughput


def _distributed_worker(rank: int, nproc: int, port: int, options: dict[str, Any], out: str) -> None:
    """One process of ``bench distributed``: joins the group as torchrun would, times training steps."""
    import json
    import os

    import torch

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(options["threads"])
    from clustering import distributed
    from clustering.config import TrainConfig
    from clustering.setup import pick_device, prepare_data, resolve_config
    from clustering.trainer import Trainer, epoch_permutation

    created = distributed.init()  # the trainer's own initialisation (gloo on CPU, NCCL for CUDA tensors)
    try:
        data = _load(options["dataset"], options["root"])
        device = distributed.place(pick_device(options["device"]))
        config = resolve_config(TrainConfig(method=options["method"], dataset=options["dataset"],
                                            backbone=options["backbone"], batch_size=options["batch_size"],
                                            image_size=options["image_size"], world_size=nproc),
                                data, device.type)  # fmt: skip
        trainer = Trainer(config, prepare_data(config, data), device, distributed.rank(), nproc)
        order = epoch_permutation(config.seed, 0, len(data)).repeat(options["steps"] + 3)
        trainer.method.train()
        start = 0.0
        for i in range(options["steps"] + 2):
            if i == 2:  # two warm-up steps, then every process starts the clock together
                if distributed.is_distributed():
                    torch.distributed.barrier()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            trainer.step(order[i * config.batch_size : (i + 1) * config.batch_size])
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = distributed.max_ints([int((time.perf_counter() - start) * 1e6)])[0] / 1e6  # the slowest rank
        if distributed.is_main():
            Path(out).write_text(json.dumps({"seconds": seconds, "batch_size": config.batch_size,
                                             "backbone": config.backbone, "device": str(device),
                                             "shape": list(data.inputs.shape[1:])}))  # fmt: skip
    finally:
        distributed.shutdown(created)


def cmd_distributed(args: argparse.Namespace) -> int:
    """Training images/s with 1, 2, ... DDP processes on this machine (same global batch each time)."""
    import json
    import socket
    import tempfile

    import torch.multiprocessing as mp

    counts = [int(c) for c in args.nproc.split(",") if c.strip()]
    if not counts or min(counts) < 1:
        raise UserError(f"--nproc expects process counts such as 1,2; got {args.nproc!r}")
    cores = usable_cores()
    rows = []
    for nproc in counts:
        # By default every run gets the same cores in total, split over its processes.
        threads = args.threads or max(1, cores // nproc)
        options = {"dataset": args.dataset, "root": args.root, "method": args.method, "backbone": args.backbone,
                   "batch_size": args.batch_size, "image_size": args.image_size, "steps": args.steps,
                   "threads": threads, "device": args.device}  # fmt: skip
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / "result.json")
            mp.start_processes(_distributed_worker, args=(nproc, port, options, out), nprocs=nproc,
                               start_method="spawn")  # fmt: skip
            res = json.loads(Path(out).read_text())
        per_step = res["seconds"] / args.steps
        rows.append({"nproc": nproc, "batch/proc": res["batch_size"] // nproc, "threads/proc": threads,
                     "step ms": per_step * 1000, "images/s": res["batch_size"] / per_step})  # fmt: skip
        print(f"{nproc} process(es): {rows[-1]['images/s']:.0f} images/s", flush=True)
    base = rows[0]["images/s"]
    for row in rows:
        row["speed-up"] = f"{row['images/s'] / base:.2f}x"
    print(f"\n{args.method} on {args.dataset} {tuple(res['shape'])}, backbone {res['backbone']}, global batch "
          f"{res['batch_size']}, {args.steps} timed steps, device {res['device']}, {cores} cores, "
          f"backend {'nccl' if res['device'].startswith('cuda') else 'gloo'}\n")  # fmt: skip
    print(markdown(rows, ("nproc", "batch/proc", "threads/proc", "step ms", "images/s", "speed-up")), flush=True)
    return 0


def _at_least_one(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks that print tables (quality, ablation, speed)")
    bsub = bench.add_subparsers(dest="bench_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root", help="data root for data sets other than digits")
        p.add_argument("--minutes", type=float, default=5.0, help="training budget per run")
        p.add_argument("--epochs", type=int, help="epoch cap per run (default: only the time budget)")
        p.add_argument("--seeds", type=int, default=3)
        p.add_argument("--threads", type=int)
        p.add_argument("--eval-every", type=int, default=5)
        p.add_argument("--results", default="bench_results", help="folder for CSV/markdown and runs")
        p.add_argument("--name", help="file stem of the tables")
        p.add_argument("--image-size", type=int, help="train at this resolution (baselines keep the native one)")
        p.add_argument("--jobs", type=_at_least_one, default=1,
                       help="training runs at once, each in its own process (threads per run: cores / jobs)")

    p = bsub.add_parser("quality", help="methods vs raw-pixel baselines: ACC/NMI/ARI/JSD per seed")
    p.add_argument("--datasets", default="digits",
                   help="data sources, folders (ImageFolder) or 'suite', comma-separated; --root serves those "
                        "that need files (for the suite: the folder holding mnist-test and cifar10-test)")
    p.add_argument("--methods", default="uccc")
    p.add_argument("--no-baselines", action="store_true")
    common(p)
    p.set_defaults(func=cmd_quality)

    p = bsub.add_parser("ablation", help="UCCC ablations: literal vs cosine, temperature, k-hop, tolerance t")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--groups", default="variant,temperature,khop,tolerance")
    p.add_argument("--configs", help="only these labels of the groups, comma-separated (e.g. t=2,t=3)")
    common(p)
    p.set_defaults(func=cmd_ablation)

    p = bsub.add_parser("speed", help="time per training step, split into augmentation and the rest")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--root")
    p.add_argument("--method", default="uccc")
    p.add_argument("--backbone")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"],
                   help="mixed precision: CUDA float16, CPU bfloat16 where the CPU has it (auto)")
    p.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory for the backbone (default: on for images)")
    p.set_defaults(func=cmd_speed)

    p = bsub.add_parser("distributed", help="DDP training throughput (images/s) with 1, 2, ... processes")
    p.add_argument("--nproc", default="1,2", help="process counts to compare, e.g. 1,2,4")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--root")
    p.add_argument("--method", default="uccc")
    p.add_argument("--backbone")
    p.add_argument("--batch-size", type=int, default=256, help="global batch, split over the processes")
    p.add_argument("--image-size", type=int)
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, help="torch threads per process (default: cores / processes)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_distributed)

    p = bsub.add_parser("lnscc-ceiling", help="LNSCC's pair objective over a free embedding table: its k-means ACC")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--root")
    p.add_argument("--im-neg-scales", default="1,0", help="E^{im-} scales to compare (1 = the paper, 0 = without)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--pairs", type=int, default=20000, help="pairs per Adam step")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--results", default="bench_results")
    p.add_argument("--name")
    p.set_defaults(func=cmd_lnscc_ceiling)

    p = bsub.add_parser("degeneracy", help="UCCC vs CC without its entropy term: per-epoch ACC, JSD, clusters")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--variants", default="uccc,cc-no-entropy", help=f"any of {', '.join(DEGENERACY_VARIANTS)}")
    common(p)
    p.set_defaults(func=cmd_degeneracy, eval_every=1, seeds=1)
