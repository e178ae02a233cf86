"""Benchmarks: the quality table, and running its training jobs in parallel worker processes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from clustering.cli import main


def quality_rows(results: Path) -> list[dict[str, str]]:
    with open(results / "quality.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_quality_in_two_worker_processes_gives_the_same_table_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["bench", "quality", "--datasets", "digits", "--methods", "uccc,cc", "--seeds", "2", "--epochs", "1",
              "--minutes", "5", "--threads", "1", "--no-baselines"]  # fmt: skip
    assert main([*common, "--results", str(tmp_path / "one")]) == 0
    assert main([*common, "--jobs", "2", "--results", str(tmp_path / "two")]) == 0
    out = capsys.readouterr().out
    one, two = quality_rows(tmp_path / "one"), quality_rows(tmp_path / "two")
    # Rows come back in the jobs' order, whichever worker finished first.
    assert [(r["method"], r["seed"]) for r in two] == [("uccc", "0"), ("uccc", "1"), ("cc", "0"), ("cc", "1")]
    assert [(r["method"], r["seed"]) for r in one] == [(r["method"], r["seed"]) for r in two]
    # The same seed trains the same model in a worker process as in this one.
    for a, b in zip(one, two, strict=True):
        assert (a["epochs"], a["acc"], a["nmi"], a["n_nonempty"]) == (b["epochs"], b["acc"], b["nmi"], b["n_nonempty"])
        assert Path(b["run_dir"]).parent == tmp_path / "two" / "runs"
        assert (Path(b["run_dir"]) / "checkpoints").is_dir()
    assert "## mean over seeds" in out


def test_quality_rejects_a_non_positive_job_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "quality", "--jobs", "0", "--results", str(tmp_path)])
    assert "argument --jobs: must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "quality.csv").exists()
