"""Summaries of run directories for tables (the studio's runs page, the fault benchmark), and
deleting a run: derived only from the files the run directory contract defines (``runs``)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clustering.runs import CONFIG_FILE, STATUS_FILE, is_run_dir, read_config, read_metrics, read_status


@dataclass
class RunSummary:
    """One row of a runs table, derived only from the run directory's files."""

    run_id: str
    path: Path
    method: str | None
    dataset: str | None
    state: str
    epochs: int | None
    steps: int | None
    best_acc: float | None
    best_nmi: float | None
    best_ari: float | None
    last_acc: float | None
    started: float | None
    duration: float | None
    error: str | None

    def as_row(self) -> dict[str, Any]:
        row = dict(self.__dict__)
        row["path"] = str(self.path)
        return row


def _best(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return max(values) if values else None


def summarize_run(run_dir: Path) -> RunSummary:
    run_dir = Path(run_dir)
    config = read_config(run_dir) or {}
    status = read_status(run_dir) or {}
    rows = read_metrics(run_dir)
    last = rows[-1] if rows else {}
    started = status.get("started")
    ended = status.get("ended") or (status.get("heartbeat") if status else None)
    return RunSummary(
        run_id=run_dir.name,
        path=run_dir,
        method=config.get("method"),
        dataset=config.get("dataset"),
        state=status.get("state", "unknown"),
        epochs=last.get("epoch"),
        steps=last.get("step"),
        best_acc=_best(rows, "acc"),
        best_nmi=_best(rows, "nmi"),
        best_ari=_best(rows, "ari"),
        last_acc=last.get("acc"),
        started=started,
        duration=(ended - started) if started and ended else None,
        error=status.get("error"),
    )


def list_runs(root: Path) -> list[RunSummary]:
    """Every run directory directly under ``root`` (newest first); unreadable ones are skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [summarize_run(p) for p in root.iterdir() if p.is_dir() and is_run_dir(p)]
    return sorted(found, key=lambda s: (s.started or 0.0, s.run_id), reverse=True)


def delete_run(run_dir: Path) -> None:
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise ValueError(f"{run_dir} is not a run directory (no {CONFIG_FILE} or {STATUS_FILE})")
    shutil.rmtree(run_dir)
