"""The run directory's liveness check: one function for the trainer's status and the studio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from clustering.runs import pid_alive, process_alive, read_status


def write_status(run: Path, pid: int) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "status.json").write_text(json.dumps({"state": "running", "pid": pid, "heartbeat": time.time()}))


def test_a_live_process_is_running_and_an_unreaped_dead_child_is_stale(tmp_path: Path) -> None:
    write_status(tmp_path / "me", os.getpid())
    assert read_status(tmp_path / "me")["state"] == "running"

    child = subprocess.Popen([sys.executable, "-c", "pass"])  # exits at once; not reaped: a zombie
    deadline = time.time() + 20
    while time.time() < deadline and pid_alive(child.pid):
        time.sleep(0.05)
    try:
        assert not pid_alive(child.pid)  # a zombie counts as dead
        write_status(tmp_path / "zombie", child.pid)
        assert read_status(tmp_path / "zombie")["state"] == "stale"
    finally:
        child.wait()


def test_without_a_pid_the_heartbeat_decides() -> None:
    assert process_alive({"heartbeat": time.time()})
    assert not process_alive({"heartbeat": time.time() - 3600})
