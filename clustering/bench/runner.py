"""Training runs of the benchmarks: their data sets, jobs, and running jobs in worker processes."""

from __future__ import annotations

import argparse
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

from clustering.errors import UserError


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
                         projections="none", **job.extra)  # fmt: skip
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


def load_native(dataset: str, root: str | None):  # noqa: ANN202
    """The data set at its native resolution (training resizes it as its config says)."""
    from clustering.data import get_source, load_dataset

    return load_dataset(dataset, root if get_source(dataset).needs_root else None)


@lru_cache(maxsize=4)
def _worker_data(source: str, root: str | None):  # noqa: ANN202
    """A worker process's training data (native size), loaded once per process and data set."""
    return load_native(source, root)


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
