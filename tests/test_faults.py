"""Killed runs: fault points fire where asked, a resume repairs what a kill left, and a run killed
in the middle of a write and resumed ends exactly where the uninterrupted run does."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from clustering import faults
from clustering.bench.faults import FaultSettings, final_metrics, inspect, sigkill_trial
from clustering.history import read_history
from clustering.runs import METRICS_FILE, RunWriter, read_metrics


def test_a_malformed_fault_spec_names_the_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.ENV, "nowhere:1")
    with pytest.raises(ValueError, match="point one of step, evaluation, metrics, predictions, history, checkpoint"):
        faults.planned()
    monkeypatch.setenv(faults.ENV, "step:0")
    with pytest.raises(ValueError, match="n >= 1"):
        faults.planned()


def test_a_fault_point_kills_on_its_nth_pass_only(monkeypatch: pytest.MonkeyPatch) -> None:
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append((pid, sig)))
    monkeypatch.setattr(faults, "_passes", {})
    monkeypatch.setenv(faults.ENV, "checkpoint:3")
    for _ in range(5):
        faults.fault_point("step")  # another point never counts
        faults.fault_point("checkpoint")
    assert kills == [(os.getpid(), signal.SIGKILL)]


def test_rewind_drops_rows_past_the_checkpoint_torn_lines_and_temp_files(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path)
    for step in (7, 14, 21):
        writer.append_metrics({"epoch": step // 7, "step": step, "acc": 0.5})
    with open(tmp_path / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write('{"epoch": 4, "step": 28, "ac')  # a kill in the middle of an append
    (tmp_path / ".predictions.npz.x1.tmp").write_bytes(b"half")
    (tmp_path / "checkpoints" / ".last.pt.x2.tmp").write_bytes(b"half")
    assert writer.rewind(14) == 2  # the row at step 21 (past last.pt) and the torn line
    assert [r["step"] for r in read_metrics(tmp_path)] == [7, 14]
    assert (tmp_path / METRICS_FILE).read_text().endswith("\n")
    writer.append_metrics({"epoch": 3, "step": 21, "acc": 0.6})  # the resumed run's row is whole
    assert [json.loads(line)["step"] for line in (tmp_path / METRICS_FILE).read_text().splitlines()] == [7, 14, 21]
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[FaultSettings, dict]:
    from clustering.bench.faults import _clustering, _env

    s = FaultSettings(out=tmp_path_factory.mktemp("faults"), epochs=3)
    proc = _clustering(s.train_args("reference"), _env(), s.timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return s, final_metrics(s.out / "reference")  # type: ignore[return-value]


@pytest.mark.parametrize("point", ["metrics", "history", "checkpoint"])
def test_a_run_killed_mid_write_reads_and_resumes_to_the_same_result(reference: tuple, point: str) -> None:
    s, expected = reference
    index = faults.POINTS.index(point)  # sigkill_trial takes the points in turn
    counts = {p: 2 for p in faults.POINTS}  # the kill comes on the 1st or 2nd pass
    trial = sigkill_trial(index, s, counts, expected, np.random.default_rng(0))
    assert trial.interrupted_rc == -signal.SIGKILL
    assert trial.readable, trial.problems  # read before the resume, as the studio would
    assert trial.resumed and trial.equal, (trial, final_metrics(s.out / trial.run_id), expected)
    assert trial.steps_lost is not None and 0 <= trial.steps_lost <= 7  # at most one epoch (7 steps)
    steps = [r["step"] for r in read_metrics(s.out / trial.run_id)]
    assert steps == sorted(set(steps)) == [r["step"] for r in read_metrics(s.out / "reference")]
    assert not inspect(s.out / trial.run_id)
    history, expected_history = read_history(s.out / trial.run_id), read_history(s.out / "reference")
    assert history is not None and expected_history is not None
    assert history.steps.tolist() == expected_history.steps.tolist() == steps  # one record per evaluation
    np.testing.assert_array_equal(history.cluster, expected_history.cluster)


@pytest.mark.parametrize("exit_after", [False, True])
def test_a_signal_after_the_run_is_written_cannot_fail_a_cli_exit(tmp_path: Path, exit_after: bool) -> None:
    """bench faults sent SIGTERM to runs that had just finished: 7 of 20 died with -15 after
    writing a finished run. The CLI (exit_after) now ignores signals once the run is written; a
    library call gets its previous handlers back."""
    from clustering.config import TrainConfig
    from clustering.train import train

    previous, previous_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        config = TrainConfig(dataset="digits", image_size=8, max_steps=1, batch_size=64, out=str(tmp_path), threads=1,
                             projections="none")
        result = train(config, progress=False, exit_after=exit_after)
        assert result.state == "finished"
        assert signal.getsignal(signal.SIGTERM) == (signal.SIG_IGN if exit_after else previous)
        assert signal.getsignal(signal.SIGINT) == (signal.SIG_IGN if exit_after else previous_int)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
