"""``bench faults``: kill, stop and resume real training processes, and count what survives.

Every trial is a ``python -m clustering train`` subprocess on the same small configuration and
seed as one uninterrupted reference run:

* **SIGKILL** at a chosen point (:mod:`clustering.faults`: during a step, an evaluation, a
  metrics append, a predictions write, a history append or a checkpoint write; the points in turn, the pass drawn
  at random), then ``--resume``;
* **SIGTERM** and the **STOP file** at a random step (polled from ``status.json``), then resume;
* a **torchrun** run of two processes with one rank killed: how long the other takes to exit, the
  status it leaves, and whether the run resumes.

After each kill the run directory is read the way the studio reads it (config, status, metrics,
predictions, ``last.pt``); the figures are: runs killed, resumed, whose final metrics equal the
reference (their ``history.bin`` too, in the tests), directories left unreadable, and steps lost
per kill (the steps done when killed minus those in the checkpoint resumed from). Torn
``metrics.jsonl`` lines and a truncated ``predictions.npz`` are then fed to the readers directly.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clustering.faults import ENV, POINTS, RANK_ENV

FINAL_KEYS = ("acc", "nmi", "ari", "jsd")


@dataclass
class FaultSettings:
    """The training run every trial repeats (small, so that a trial takes seconds)."""

    out: Path
    dataset: str = "digits"
    image_size: int = 8
    epochs: int = 4
    batch_size: int = 256
    seed: int = 0
    timeout: float = 300.0

    def train_args(self, run_id: str) -> list[str]:
        # Evaluated every epoch, so that every trial passes the same fault points.
        return ["train", "--dataset", self.dataset, "--image-size", str(self.image_size), "--epochs", str(self.epochs),
                "--batch-size", str(self.batch_size), "--seed", str(self.seed), "--threads", "1", "--no-progress",
                "--out", str(self.out), "--run-id", run_id, "--projections", "none",
                "--eval-every", "1"]  # fmt: skip


@dataclass
class Trial:
    kind: str  # sigkill:<point>, sigterm, stop-file, torchrun-kill-rank<r>
    run_id: str
    interrupted_rc: int | None = None
    interrupted_at: int | None = None  # steps done when interrupted
    resumed_from: int | None = None  # the step of last.pt the resume started from
    readable: bool = False
    problems: list[str] = field(default_factory=list)
    resumed: bool = False
    equal: bool = False
    exit_seconds: float | None = None  # torchrun: from the kill to the launcher's exit
    state_after: str | None = None  # status.json's state right after the interruption

    @property
    def steps_lost(self) -> int | None:
        if self.interrupted_at is None or self.resumed_from is None:
            return None
        return self.interrupted_at - self.resumed_from


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV, RANK_ENV)}
    env["OMP_NUM_THREADS"] = "1"
    return env | (extra or {})


def _clustering(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clustering", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip


def final_metrics(run_dir: Path) -> dict[str, Any] | None:
    from clustering.runs import read_metrics

    rows = read_metrics(run_dir)
    return {k: rows[-1].get(k) for k in ("step", *FINAL_KEYS)} if rows else None


def inspect(run_dir: Path) -> list[str]:
    """What the studio's readers cannot read in ``run_dir`` (empty: everything reads)."""
    from clustering.checkpoint import load_checkpoint
    from clustering.errors import CheckpointError
    from clustering.run_summary import summarize_run
    from clustering.runs import (
        PREDICTIONS_FILE,
        read_config,
        read_metrics,
        read_predictions,
        read_status,
    )

    problems = []
    if read_config(run_dir) is None:
        problems.append("config.json")
    if read_status(run_dir) is None:
        problems.append("status.json")
    try:
        read_metrics(run_dir)
        summarize_run(run_dir)
    except Exception as exc:  # noqa: BLE001 - any exception is a finding here
        problems.append(f"metrics: {type(exc).__name__}")
    if (run_dir / PREDICTIONS_FILE).exists() and read_predictions(run_dir) is None:
        problems.append("predictions.npz")
    try:
        load_checkpoint(run_dir / "checkpoints" / "last.pt")
    except CheckpointError:
        problems.append("last.pt")
    return problems


def checkpoint_step(run_dir: Path) -> int | None:
    from clustering.checkpoint import load_checkpoint

    try:
        return int(load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"])
    except Exception:  # noqa: BLE001
        return None


def _killed_at(stderr: str, run_dir: Path) -> int | None:
    """Steps done when the fault fired: from its line, else the last metrics row (predictions)."""
    match = re.search(r"fault: SIGKILL at (\w+) #\d+ \(step (\w+)\)", stderr)
    if match is None:
        return None
    point, step = match.group(1), match.group(2)
    if step != "None":
        return int(step) - 1 if point == "step" else int(step)  # a step killed before its update
    last_step = (final_metrics(run_dir) or {}).get("step")
    return int(last_step) if last_step is not None else None


def _resume(trial: Trial, s: FaultSettings, reference: dict[str, Any], args: list[str] | None = None) -> None:
    run_dir = s.out / trial.run_id
    trial.problems = inspect(run_dir)
    trial.readable = not trial.problems
    trial.resumed_from = checkpoint_step(run_dir)
    proc = _clustering(args or ["train", "--resume", str(run_dir), "--no-progress"], _env(), s.timeout)
    trial.resumed = proc.returncode == 0 and "finished:" in proc.stdout
    got = final_metrics(run_dir)
    trial.equal = bool(trial.resumed and got is not None and got["step"] == reference["step"]
                       and all(np.isclose(got[k], reference[k], rtol=0, atol=1e-9) for k in FINAL_KEYS))  # fmt: skip


def _state(run_dir: Path) -> str | None:
    from clustering.runs import read_status

    return (read_status(run_dir) or {}).get("state")


def sigkill_trial(index: int, s: FaultSettings, counts: dict[str, int], reference: dict[str, Any],
                  rng: np.random.Generator) -> Trial:  # fmt: skip
    point = POINTS[index % len(POINTS)]
    n = int(rng.integers(1, counts[point] + 1))
    trial = Trial(f"sigkill:{point}", f"kill-{index:03d}-{point}")
    proc = _clustering(s.train_args(trial.run_id), _env({ENV: f"{point}:{n}"}), s.timeout)
    trial.interrupted_rc = proc.returncode
    trial.interrupted_at = _killed_at(proc.stderr, s.out / trial.run_id)
    trial.state_after = _state(s.out / trial.run_id)
    _resume(trial, s, reference)
    return trial


def signal_trial(index: int, kind: str, s: FaultSettings, total_steps: int, reference: dict[str, Any],
                 rng: np.random.Generator) -> Trial:  # fmt: skip
    """SIGTERM or a STOP file once status.json reports a random step."""
    from clustering.runs import read_status, request_stop

    trial = Trial(kind, f"{kind}-{index:03d}")
    run_dir = s.out / trial.run_id
    target = int(rng.integers(1, total_steps))
    proc = subprocess.Popen([sys.executable, "-m", "clustering", *s.train_args(trial.run_id)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + s.timeout
    while proc.poll() is None and time.time() < deadline:
        status = read_status(run_dir) or {}
        if int(status.get("step") or 0) >= target:
            if kind == "sigterm":
                proc.send_signal(signal.SIGTERM)
            else:
                request_stop(run_dir)
            break
        time.sleep(0.05)
    proc.communicate(timeout=s.timeout)
    trial.interrupted_rc = proc.returncode
    status = read_status(run_dir) or {}
    trial.state_after = status.get("state")
    if status.get("state") != "stopped":
        trial.problems.append(f"state {status.get('state')!r} after the signal (the run may have ended first)")
    trial.interrupted_at = status.get("step")
    _resume(trial, s, reference)
    return trial


def torchrun_trial(rank: int, s: FaultSettings, counts: dict[str, int]) -> Trial:
    """Two CPU processes under torchrun, one rank SIGKILLed mid-step; then a torchrun resume."""
    trial = Trial(f"torchrun-kill-rank{rank}", f"ddp-kill-rank{rank}")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "clustering"]  # fmt: skip
    n = max(1, counts["step"] // 2)
    proc = subprocess.run([*launcher, *s.train_args(trial.run_id), "--device", "cpu"], capture_output=True, text=True,
                          env=_env({ENV: f"step:{n}", RANK_ENV: str(rank)}), timeout=s.timeout)  # fmt: skip
    trial.interrupted_rc = proc.returncode
    killed = re.search(r"fault: SIGKILL .* at ([0-9.]+)", proc.stderr)
    trial.exit_seconds = time.time() - float(killed.group(1)) if killed else None
    trial.interrupted_at = n - 1
    run_dir = s.out / trial.run_id
    trial.problems = inspect(run_dir)
    trial.readable = not trial.problems
    trial.resumed_from = checkpoint_step(run_dir)
    trial.state_after = _state(run_dir)
    resume = subprocess.run([*launcher, "train", "--resume", str(run_dir), "--no-progress", "--device", "cpu"],
                            capture_output=True, text=True, env=_env(), timeout=s.timeout)  # fmt: skip
    trial.resumed = resume.returncode == 0 and "finished:" in resume.stdout
    return trial


def reader_checks(run_dir: Path, scratch: Path) -> list[dict[str, Any]]:
    """A torn metrics line and a truncated predictions.npz, opened with the studio's readers."""
    from clustering.run_summary import summarize_run
    from clustering.runs import METRICS_FILE, PREDICTIONS_FILE, read_metrics, read_predictions

    shutil.copytree(run_dir, scratch)
    rows = read_metrics(scratch)
    with open(scratch / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write('{"epoch": 9, "step": 99, "acc": 0.')
    torn = read_metrics(scratch)
    data = (scratch / PREDICTIONS_FILE).read_bytes()
    (scratch / PREDICTIONS_FILE).write_bytes(data[: len(data) // 2])
    truncated = read_predictions(scratch)
    summary = summarize_run(scratch)
    return [
        {"check": "torn metrics.jsonl line", "result": "whole rows read, torn line skipped"
         if torn == rows else f"rows changed: {len(rows)} -> {len(torn)}"},
        {"check": "truncated predictions.npz", "result": "reported missing (None), no exception"
         if truncated is None else "read a truncated file"},
        {"check": "run summary of that directory", "result": f"state {summary.state!r}, {summary.steps} steps"},
    ]  # fmt: skip


def count_points(s: FaultSettings, reference_dir: Path) -> dict[str, int]:
    """How often each fault point is passed in the reference run (from its files)."""
    from clustering.runs import read_metrics

    evals = len(read_metrics(reference_dir))
    steps = int(final_metrics(reference_dir)["step"])  # type: ignore[index]
    # last.pt: once at the start and after every epoch (and at the end); best.pt: often, not always.
    writes = {point: evals for point in ("evaluation", "metrics", "predictions", "history")}
    return {"step": steps, **writes, "checkpoint": s.epochs + 1}


def summary_rows(trials: list[Trial]) -> list[dict[str, Any]]:
    rows = []
    for kind in dict.fromkeys(t.kind.split(":")[0] for t in trials):
        group = [t for t in trials if t.kind.split(":")[0] == kind]
        lost = [t.steps_lost for t in group if t.steps_lost is not None]
        rows.append({"trial": kind, "runs": len(group),
                     "exited as expected": sum(_expected_rc(t) for t in group),
                     "unreadable dirs": sum(not t.readable for t in group), "resumed": sum(t.resumed for t in group),
                     "final metrics equal": sum(t.equal for t in group) if kind != "torchrun-kill" else "-",
                     "status after": "/".join(sorted({str(t.state_after) for t in group})),
                     "steps lost (mean / max)": f"{np.mean(lost):.1f} / {max(lost)}" if lost else "-",
                     "seconds to exit (max)": f"{max(t.exit_seconds for t in group if t.exit_seconds):.1f}"
                     if any(t.exit_seconds for t in group) else "-"})  # fmt: skip
    return rows


def _expected_rc(t: Trial) -> bool:
    if t.kind.startswith("sigkill"):
        return t.interrupted_rc == -signal.SIGKILL
    if t.kind.startswith("torchrun"):
        return t.interrupted_rc not in (0, None)  # a killed rank fails the job, and says so
    return t.interrupted_rc == 0  # a stop is a clean exit


def cmd_faults(args: argparse.Namespace) -> int:
    from clustering.bench.tables import markdown, save_table

    results = Path(args.results)
    out = results / "fault_runs"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    s = FaultSettings(out=out, dataset=args.dataset, image_size=args.image_size, epochs=args.epochs,
                      batch_size=args.batch_size, seed=args.seed)  # fmt: skip
    rng = np.random.default_rng(args.seed)
    proc = _clustering(s.train_args("reference"), _env(), s.timeout)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return 1
    reference = final_metrics(out / "reference")
    counts = count_points(s, out / "reference")
    print(f"reference: {reference}; fault points passed: {counts}", flush=True)
    trials: list[Trial] = []
    plan = [("sigkill", i) for i in range(args.kills)] + [("sigterm", i) for i in range(args.stops)]
    plan += [("stop-file", i) for i in range(args.stops)]
    for kind, i in plan:
        if kind == "sigkill":
            trial = sigkill_trial(i, s, counts, reference, rng)  # type: ignore[arg-type]
        else:
            trial = signal_trial(i, kind, s, counts["step"], reference, rng)  # type: ignore[arg-type]
        trials.append(trial)
        print(f"{trial.kind:<22} rc={trial.interrupted_rc} at step {trial.interrupted_at}, resumed from "
              f"{trial.resumed_from}: readable={trial.readable} resumed={trial.resumed} equal={trial.equal}"
              + (f" problems={trial.problems}" if trial.problems else ""), flush=True)  # fmt: skip
    for rank in range(args.torchrun):
        trial = torchrun_trial(rank % 2, s, counts)
        trial.kind = "torchrun-kill"
        trials.append(trial)
        after = "-" if trial.exit_seconds is None else f"{trial.exit_seconds:.1f}"
        print(f"torchrun, rank {rank % 2} killed: launcher rc={trial.interrupted_rc} {after} s after "
              f"the kill, status {trial.state_after!r}, resumed={trial.resumed}"
              + (f" problems={trial.problems}" if trial.problems else ""), flush=True)
    rows = summary_rows(trials)
    checks = reader_checks(out / "reference", out / "reader-checks")
    columns = list(rows[0]) if rows else ["trial"]
    text = f"{markdown(rows, tuple(columns))}\n\n{markdown(checks, ('check', 'result'))}\n"
    print()
    save_table(results, args.name or "faults", rows, columns, text)
    return 0
