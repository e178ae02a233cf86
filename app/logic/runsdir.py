"""Where runs live: the runs folder, the shipped demo runs, per-run caches and launch logs.

The studio shows two kinds of run directories side by side:

* the user's runs folder (``--runs PATH``, ``$CLUSTER_STUDIO_RUNS``, the sidebar, default
  ``runs``), listed afresh on every rerun so runs copied in from another machine appear
  without a restart;
* the demo runs shipped in ``assets/demo_runs``, listed as *read-only* entries. They are never
  copied automatically (a fresh runs folder stays empty and the repository stays untouched);
  the studio can copy one into the runs folder on request, e.g. to resume it.

Everything here derives from the run-directory files, never from process memory, so the
picture survives a browser refresh or a studio restart.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clustering.run_summary import RunSummary, summarize_run
from clustering.run_summary import delete_run as delete_run  # re-exported for the runs page
from clustering.runs import PREDICTIONS_FILE, is_run_dir, pid_alive

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_RUNS = REPO_ROOT / "assets" / "demo_runs"
#: The demo the studio opens on a first start; the others (e.g. SACC, for Compare runs) follow.
PRIMARY_DEMO = "demo-uccc-digits"
ENV_VAR = "CLUSTER_STUDIO_RUNS"
DEFAULT_RUNS = "runs"
#: Launch logs and launch records live here, beside (not inside) the run directories: the
#: trainer refuses to start in a run directory that already has files in it.
LOG_DIR = ".studio-logs"
#: Caches of read-only (demo) runs go here so the repository's assets are never written to.
SHARED_CACHE_DIR = ".studio-cache"


def resolve_runs_folder(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    """``--runs PATH`` (after ``--`` on the streamlit command line) > ``$CLUSTER_STUDIO_RUNS`` > ``runs``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs")
    args, _ = parser.parse_known_args(list(argv or []))
    env = os.environ if env is None else env
    value = args.runs or env.get(ENV_VAR) or DEFAULT_RUNS
    return Path(value).expanduser()


@dataclass(frozen=True)
class RunRef:
    """A run directory the studio can show. ``read_only`` runs (the shipped demo) cannot be
    stopped, resumed or deleted, and their caches go to the runs folder."""

    run_id: str
    path: Path
    read_only: bool = False

    @property
    def label(self) -> str:
        return f"{self.run_id} (demo, read-only)" if self.read_only else self.run_id


def discover_runs(runs_folder: Path, demo_folder: Path | None = DEMO_RUNS) -> list[RunRef]:
    """User runs (newest first by directory name and mtime) followed by the demo runs
    (:data:`PRIMARY_DEMO` first, then by name).

    A demo run already copied into the runs folder (same id) is listed once, as the user's.
    """
    refs: list[RunRef] = []
    seen: set[str] = set()
    for folder, read_only in ((runs_folder, False), (demo_folder, True)):
        if folder is None or not Path(folder).is_dir():
            continue
        found = []
        for path in Path(folder).iterdir():
            if path.name.startswith(".") or not path.is_dir() or not is_run_dir(path):
                continue
            if path.name in seen:
                continue
            found.append(path)
        if read_only:  # the shipped demos in a fixed order, the primary one first (a clone sets every mtime)
            found.sort(key=lambda p: (p.name != PRIMARY_DEMO, p.name))
        else:
            found.sort(key=lambda p: (_mtime(p), p.name), reverse=True)
        for path in found:
            seen.add(path.name)
            refs.append(RunRef(path.name, path, read_only))
    return refs


def _mtime(path: Path) -> float:
    try:
        return (path / "config.json").stat().st_mtime
    except OSError:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0


def run_stamp(path: Path) -> tuple[int, ...]:
    """Cheap fingerprint of a run directory's mutable files (for cache invalidation)."""
    out: list[int] = []
    for name in ("config.json", "status.json", "metrics.jsonl", PREDICTIONS_FILE):
        try:
            st = (Path(path) / name).stat()
            out += [st.st_mtime_ns, st.st_size]
        except OSError:
            out += [0, 0]
    return tuple(out)


def summary_row(ref: RunRef, summary: RunSummary) -> dict[str, Any]:
    """One row of the runs table (best metrics are None without labels)."""
    return {
        "run": ref.run_id,
        "method": summary.method,
        "dataset": summary.dataset,
        "status": summary.state,
        "epochs": summary.epochs,
        "best ACC": summary.best_acc,
        "best NMI": summary.best_nmi,
        "best ARI": summary.best_ari,
        "started": summary.started,
        "duration": summary.duration,
        "demo": ref.read_only,
        "error": summary.error,
    }


def runs_frame(refs: list[RunRef]) -> pd.DataFrame:
    """The runs table: one row per run, times as datetimes and durations as h:mm:ss text.
    Missing values (a torn config, a run that never started) stay empty instead of raising."""
    rows = [summary_row(ref, summarize_run(ref.path)) for ref in refs]
    df = pd.DataFrame(rows, columns=list(summary_row(RunRef("", Path(".")), _EMPTY).keys()))

    def when(value: Any) -> dt.datetime | None:
        return (
            dt.datetime.fromtimestamp(value)
            if isinstance(value, (int, float)) and math.isfinite(value)
            else None
        )

    def how_long(value: Any) -> str:
        ok = isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
        return str(dt.timedelta(seconds=round(value))) if ok else ""

    df["started"] = pd.Series([when(v) for v in df["started"]], dtype="datetime64[ns]") if len(df) else []
    df["duration"] = [how_long(v) for v in df["duration"]]
    return df


_EMPTY = RunSummary(
    "", Path("."), None, None, "unknown", None, None, None, None, None, None, None, None, None
)


def cache_dir(ref: RunRef, runs_folder: Path) -> Path:
    """Where derived data (projections) of a run is cached: ``RUN_DIR/cache`` for the user's
    runs (deleted with the run), ``RUNS/.studio-cache/<id>`` for read-only demo runs."""
    if ref.read_only:
        return Path(runs_folder) / SHARED_CACHE_DIR / ref.run_id
    return ref.path / "cache"


def log_dir(runs_folder: Path) -> Path:
    return Path(runs_folder) / LOG_DIR


def log_path(runs_folder: Path, run_id: str) -> Path:
    return log_dir(runs_folder) / f"{run_id}.log"


def record_launch(runs_folder: Path, run_id: str, pid: int, cmd: list[str], started: float) -> None:
    """A small sidecar that lets the studio show a launched run before its directory exists."""
    folder = log_dir(runs_folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"run_id": run_id, "pid": pid, "cmd": cmd, "started": started}
    (folder / f"{run_id}.json").write_text(json.dumps(data), encoding="utf-8")


def pending_launches(runs_folder: Path) -> list[dict[str, Any]]:
    """Launches whose run directory has no config/status yet: still starting (process alive)
    or failed before writing anything (process gone; the log says why)."""
    folder = log_dir(runs_folder)
    if not folder.is_dir():
        return []
    out = []
    for record in sorted(folder.glob("*.json")):
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        run_id = str(data.get("run_id", record.stem))
        if is_run_dir(Path(runs_folder) / run_id):
            continue
        pid = data.get("pid")
        data["alive"] = isinstance(pid, int) and pid_alive(pid)
        data["log"] = str(log_path(runs_folder, run_id))
        out.append(data)
    return out


def dismiss_launch(runs_folder: Path, run_id: str) -> None:
    for suffix in (".json", ".log"):
        (log_dir(runs_folder) / f"{run_id}{suffix}").unlink(missing_ok=True)


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def copy_demo(ref: RunRef, runs_folder: Path) -> Path:
    """Copy a read-only run into the runs folder (so it can be resumed or deleted)."""
    target = Path(runs_folder) / ref.run_id
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    Path(runs_folder).mkdir(parents=True, exist_ok=True)
    shutil.copytree(ref.path, target, ignore=shutil.ignore_patterns("cache", "*.tmp"))
    return target
