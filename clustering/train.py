"""The training loop: epochs of :meth:`Trainer.step`, evaluation, checkpoints, budgets, stop and resume.

``train()`` is the one entry point (the CLI, the studio's launcher and the benchmarks call it).
Setup lives in :mod:`clustering.setup`, the step in :mod:`clustering.trainer`, evaluation in
:mod:`clustering.evaluation`; this module only drives them and writes the run directory.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clustering import distributed
from clustering.checkpoint import load_last_checkpoint, save_checkpoint
from clustering.config import TrainConfig
from clustering.console import announce_data_defaults, fmt, log_epoch
from clustering.data import DataSet, load_dataset
from clustering.errors import ConfigError
from clustering.evaluation import evaluate_run, evaluation_row
from clustering.faults import fault_point
from clustering.metrics import SCALAR_KEYS
from clustering.projections import write_projections_after_run
from clustering.runs import NullWriter, RunWriter, claim_run_dir
from clustering.setup import pick_device, prepare_data, resolve_config, resumed_config
from clustering.trainer import NonFiniteLoss, Trainer, epoch_permutation

__all__ = ["StepCallback", "TrainResult", "evaluate_run", "train"]

StepCallback = Callable[[int, dict[str, float]], None]

#: Why a loop halts, by code; the highest code wins when DDP ranks disagree.
HALT_REASONS = {1: "stop requested", 2: "time budget", 3: "max_steps"}
#: With ``eval_every`` unset, an epoch ends in an evaluation (metrics row, predictions, history,
#: ``last.pt``) once the training since the last one took this many times as long as it did: under
#: 5% of a run. Epochs of 2-4 steps evaluated every epoch spent 14-20% of a CPU run on it (README,
#: "When a run evaluates").
EVAL_TIME_RATIO = 20.0


@dataclass
class TrainResult:
    run_dir: Path
    state: str
    epoch: int
    step: int
    metrics: dict[str, Any] = field(default_factory=dict)
    rank: int = 0  # the DDP rank that returns this (only rank 0 wrote the run directory)


@dataclass
class Progress:
    """Where the loop is; saved in every checkpoint so a resume continues at the exact step."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    best_value: float | None = None
    epoch_sums: dict[str, float] = field(default_factory=dict)
    epoch_batches: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch,
                "best_value": self.best_value, "epoch_sums": dict(self.epoch_sums),
                "epoch_batches": self.epoch_batches}  # fmt: skip

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Progress:
        return cls(ckpt["epoch"], ckpt["step"], ckpt.get("batch_in_epoch", 0), ckpt.get("best_value"),
                   dict(ckpt.get("epoch_sums", {})), ckpt.get("epoch_batches", 0))  # fmt: skip


class _StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between steps."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self, signum: int, _frame: Any) -> None:
        self.reason = f"signal {signal.Signals(signum).name}"


class TrainingLoop:
    """Drives a :class:`Trainer` through epochs into a run directory (rank 0 writes it)."""

    def __init__(self, trainer: Trainer, writer: RunWriter, progress: Progress, show: bool,
                 on_step: StepCallback | None = None) -> None:  # fmt: skip
        self.trainer, self.writer, self.state = trainer, writer, progress
        self.config = trainer.config
        self.show, self.on_step = show, on_step
        self.is_main = trainer.rank == 0
        self.stop = _StopFlag()
        self.start_time = self.last_ckpt_time = time.time()
        self.last_heartbeat = 0.0
        self.elapsed = 0.0  # seconds since this session's start, agreed over ranks at each step
        self.last_eval: dict[str, Any] = {}
        self.last_eval_step = -1
        self.last_eval_end, self.eval_seconds = self.start_time, 0.0  # the automatic cadence's clock
        self.steps_per_epoch = len(trainer.data) // self.config.batch_size  # drop_last: full batches only

    # ------------------------------------------------------------------ evaluation and checkpoints

    def evaluate(self, notes: dict[str, float] | None = None) -> dict[str, Any]:
        """Metrics of the model on the whole data set into the run directory (``notes``: scalars of
        the end-of-run hook for this row); saves ``best.pt`` when the best metric improved."""
        emb = self.trainer.embed()
        s = self.state
        fault_point("evaluation", s.step)
        parts = {k: v / max(s.epoch_batches, 1) for k, v in s.epoch_sums.items()}

        def score() -> tuple[dict[str, Any], Any]:  # rank 0: metrics, files, and the best-metric value
            metrics, predictions = evaluation_row(self.trainer.data, emb)
            row = {"epoch": s.epoch, "step": s.step, "time": time.time(), "elapsed": time.time() - self.start_time,
                   "lr": self.trainer.optimizer.param_groups[0]["lr"], **parts,
                   **{k: metrics[k] for k in SCALAR_KEYS}, "cluster_sizes": metrics["cluster_sizes"],
                   **(notes or {})}  # fmt: skip
            self.writer.append_metrics(row)
            self.writer.write_predictions(**predictions, step=np.int64(s.step))
            self.writer.append_history(s.step, s.epoch, predictions["cluster"], predictions["confidence"])
            metric = self.config.best_metric
            return row, parts.get("loss") if metric == "loss" else row.get(metric)

        # Rank 0's verdict for every rank: saving best.pt is a collective step under DDP.
        row, value = distributed.on_main(score)
        if value is not None:
            lower = self.config.best_metric == "loss"
            if s.best_value is None or (value < s.best_value if lower else value > s.best_value):
                s.best_value = value
                self.save("best")
        self.last_eval, self.last_eval_step = row, s.step
        return row

    def evaluation_due(self) -> bool:
        """Evaluate the epoch that just ended? Every ``eval_every`` epochs, else by EVAL_TIME_RATIO
        (always before the first evaluation); the same answer on every rank."""
        every = self.config.eval_every
        if every is not None:
            return self.state.epoch % every == 0
        due = time.time() - self.last_eval_end >= EVAL_TIME_RATIO * self.eval_seconds
        return bool(distributed.max_ints([int(due)])[0])

    def save(self, which: str) -> None:
        state = self.trainer.state_dict()  # collective under DDP: every rank calls it
        if which == "last":
            self.last_ckpt_time = time.time()
        if not self.is_main:
            return
        payload = {"config": json.loads(json.dumps(self.config.to_dict())), **state, **self.state.to_dict()}
        save_checkpoint(self.writer.checkpoint_dir / f"{which}.pt", payload)

    # ------------------------------------------------------------------ budgets and stop requests

    def out_of_budget(self) -> int:
        if self.config.max_steps is not None and self.state.step >= self.config.max_steps:
            return 3
        if self.config.minutes is not None and time.time() - self.start_time >= self.config.minutes * 60:
            return 2
        return 0

    def progress(self) -> float:
        """How far the run is, in [0, 1]: the furthest along of its epochs, steps and time budget.

        The time budget counts from this session's start (a resumed run's budget is its own); under
        DDP every rank takes the latest clock of all ranks (``agreed_halt``), so all ranks enter a
        stage at the same step.
        """
        s, cfg = self.state, self.config
        done = [(s.epoch + s.batch_in_epoch / max(self.steps_per_epoch, 1)) / cfg.epochs]
        if cfg.max_steps is not None:
            done.append(s.step / cfg.max_steps)
        if cfg.minutes is not None:
            done.append(self.elapsed / (cfg.minutes * 60))
        return min(1.0, max(done))

    def agreed_halt(self, with_stop: bool) -> tuple[int, bool]:
        """(halt code, last.pt due) with the same answer on every rank.

        Under DDP any rank may receive a signal, rank 0 alone sees the STOP file and times the
        checkpoints, and clocks differ; one small all-reduce makes all ranks stop (or save) at the
        same step, as a collective step requires. Plain local checks in one process.
        """
        code = self.out_of_budget()
        if not code and with_stop and (self.stop.reason or self.writer.stop_requested()):
            code = 1
        due = with_stop and self.is_main and time.time() - self.last_ckpt_time > self.config.checkpoint_minutes * 60
        # The clock rides along, so every rank sees the same elapsed time (``progress``).
        code, due_int, elapsed_ms = distributed.max_ints([code, int(due), int((time.time() - self.start_time) * 1000)])
        self.elapsed = elapsed_ms / 1000.0
        return code, bool(due_int)

    # ------------------------------------------------------------------ the loop

    def run_epoch(self) -> int:
        """Steps to the end of the epoch; the halt code that interrupted it, or 0."""
        s, cfg = self.state, self.config
        if s.batch_in_epoch == 0:
            self.trainer.start_epoch(s.epoch, self.progress())
        order = epoch_permutation(cfg.seed, s.epoch, len(self.trainer.data))
        bar = self._bar()
        try:
            while s.batch_in_epoch < self.steps_per_epoch:
                halt, save_due = self.agreed_halt(with_stop=True)
                if halt:
                    return halt
                if save_due:  # the state after the previous step, saved before the next one
                    self.save("last")
                lo = s.batch_in_epoch * cfg.batch_size
                try:
                    parts = self.trainer.step(order[lo : lo + cfg.batch_size], self.progress())
                except NonFiniteLoss as exc:
                    raise FloatingPointError(f"{exc} at step {s.step + 1} (epoch {s.epoch + 1})") from None
                s.step += 1
                s.batch_in_epoch += 1
                for k, v in parts.items():
                    s.epoch_sums[k] = s.epoch_sums.get(k, 0.0) + v
                s.epoch_batches += 1
                self._after_step(parts, bar)
        finally:
            if bar is not None:
                bar.close()
        return 0

    def _bar(self) -> Any:
        if not self.show:
            return None
        from tqdm import tqdm

        return tqdm(total=self.steps_per_epoch, initial=self.state.batch_in_epoch, desc=f"epoch {self.state.epoch + 1}",
                    leave=False, dynamic_ncols=True)  # fmt: skip

    def _after_step(self, parts: dict[str, float], bar: Any) -> None:
        s = self.state
        if self.on_step is not None:
            self.on_step(s.step, parts)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{parts['loss']:.4f}", acc=fmt(self.last_eval.get("acc")))
        now = time.time()
        if now - self.last_heartbeat > 2.0:
            self.writer.heartbeat(step=s.step, epoch=s.epoch, epoch_progress=s.batch_in_epoch / self.steps_per_epoch,
                                  loss=parts["loss"])  # fmt: skip
            self.last_heartbeat = now

    def fit(self) -> tuple[str, str]:
        """Run epochs until done, out of budget or stopped: the final (state, reason)."""
        s, cfg = self.state, self.config
        self.trainer.method.train()
        while s.epoch < cfg.epochs:
            halt = self.run_epoch()
            if halt:  # interrupted mid-epoch
                if halt == 1:
                    return "stopped", self.stop.reason or HALT_REASONS[1]
                return "finished", HALT_REASONS[halt]
            s.epoch += 1
            s.batch_in_epoch = 0
            halt, _ = self.agreed_halt(with_stop=False)
            if halt or s.epoch == cfg.epochs:  # the last epoch: ``run`` finishes, evaluates and saves it
                return "finished", HALT_REASONS[halt] if halt else "epochs done"
            if self.evaluation_due():
                started = time.time()
                row = self.evaluate()
                if self.is_main:
                    log_epoch(row, self.show)
                # The next row's losses average every step since this one; last.pt matches the rows.
                s.epoch_sums, s.epoch_batches = {}, 0
                self.save("last")
                self.last_eval_end = time.time()
                self.eval_seconds = self.last_eval_end - started
        return "finished", "epochs done"

    def run(self, fresh: bool, exit_after: bool = False) -> TrainResult:
        """``fit`` with the run directory kept consistent whatever happens (crash, NaN, signal).
        ``exit_after``: see :func:`train`."""
        s = self.state
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if fresh:
                self.save("last")  # a run always has a checkpoint, even if stopped in its first step
            state, reason = self.fit()
            # A finished run's method may edit its model once (UCCC re-seeds the clusters left
            # empty) before the evaluation and the checkpoint that the run ends with.
            notes = self.trainer.finish(s.epoch) if state == "finished" else {}
            if self.last_eval_step != s.step or any(notes.values()):
                row = self.evaluate(notes)
                if self.is_main:
                    log_epoch(row, self.show)
                s.epoch_sums, s.epoch_batches = {}, 0  # a resumed run's next row: its own steps
            self.save("last")
            self.writer.set_status(state, step=s.step, epoch=s.epoch, reason=reason)
            if exit_after:  # written: from here a late signal has nothing to stop
                handlers = {sig: signal.SIG_IGN for sig in handlers}
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                self.writer.set_status("stopped", step=s.step, epoch=s.epoch, reason="interrupted")
            else:
                # The model may be corrupt (NaN), so last.pt is left as the last good checkpoint.
                self.writer.set_status("failed", step=s.step, epoch=s.epoch, error=f"{type(exc).__name__}: {exc}",
                                       traceback=traceback.format_exc(limit=20))  # fmt: skip
            raise
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return TrainResult(self.writer.dir, state, s.epoch, s.step, self.last_eval, self.trainer.rank)


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    progress: bool | None = None,
    on_step: StepCallback | None = None,
    data: DataSet | None = None,
    exit_after: bool = False,
) -> TrainResult:
    """Train a run (new from ``config``, or continued from the run directory ``resume``).

    ``overrides`` (budget fields such as epochs, minutes, max_steps) apply on resume.
    ``on_step(step, parts)`` is called after every optimiser step with the float loss parts.
    ``data`` (a loaded data set, at its native size) saves loading it again.

    Multi-process: under torchrun (or inside an already initialised process group) every process
    calls this; ``config.batch_size`` is the global batch, each process trains on its slice with
    DDP, the batch-level losses see the global batch, and rank 0 alone writes the run directory.
    ``on_step`` runs on every rank; ``TrainResult.rank`` says which one returned.

    ``exit_after``: the caller exits once this returns (the CLI). A SIGTERM or Ctrl-C that arrives
    after the run is written is then ignored rather than killing a process that has nothing left
    to save with a signal exit code (a scheduler would see a failed job for a finished run);
    otherwise the previous handlers are restored, as a library call must.
    """
    owns_group = distributed.init()
    try:
        result = _train(config, resume, overrides, progress, on_step, data, exit_after)
    finally:
        distributed.shutdown(owns_group)
    if result.rank == 0:
        write_projections_after_run(result.run_dir, exit_after)
    return result


def _train(config: TrainConfig | None, resume: str | Path | None, overrides: dict[str, Any] | None,
           progress: bool | None, on_step: StepCallback | None, data: DataSet | None,
           exit_after: bool = False) -> TrainResult:  # fmt: skip
    is_main, world, rank = distributed.is_main(), distributed.world_size(), distributed.rank()
    if resume is not None:
        run_dir = Path(resume)
        config = resumed_config(run_dir, overrides or {}, world)
    elif config is None:
        raise ConfigError("train() needs a config or a run directory to resume")
    else:
        config = TrainConfig.from_dict(config.to_dict())
        config.world_size = world
        config.check()
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    device = distributed.place(pick_device(config.device))
    if data is None:
        data = load_dataset(config.dataset, config.root, config.split, config.image_size, config.download,
                            label_column=config.label_column, num_clusters=config.num_clusters)  # fmt: skip
    if resume is None:
        config = resolve_config(config, data, device.type)
        config.run_id = distributed.on_main(
            lambda: claim_run_dir(config.out, config.run_id, config.method, config.dataset))
        run_dir = Path(config.out) / config.run_id
    trainer = Trainer(config, prepare_data(config, data), device, rank, world)
    if resume is None and is_main:
        announce_data_defaults(config)
    writer = RunWriter(run_dir) if is_main else NullWriter(run_dir)
    state = Progress()
    if resume is not None:
        ckpt = distributed.on_main(lambda: load_last_checkpoint(run_dir, device if world == 1 else "cpu"))
        trainer.load_state_dict(ckpt)
        state = Progress.from_checkpoint(ckpt)
        writer.clear_stop_request()
        writer.rewind(state.step)
    else:
        writer.write_config(config.to_dict())
    show = (sys.stderr.isatty() if progress is None else progress) and is_main
    loop = TrainingLoop(trainer, writer, state, show, on_step)  # budgets count from here
    writer.set_status("running", step=state.step, epoch=state.epoch, device=str(device), run_id=run_dir.name,
                      resumed=resume is not None, world_size=world)  # fmt: skip
    return loop.run(fresh=resume is None, exit_after=exit_after)


os.environ.setdefault("KMP_WARNINGS", "0")
