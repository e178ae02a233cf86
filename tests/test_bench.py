"""Benchmarks: the quality table, and running its training jobs in parallel worker processes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
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
    assert main(["bench", "quality", "--jobs", "0", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "argument --jobs: must be >= 1, got 0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "quality.csv").exists()


def test_lnscc_free_embedding_ceiling_separates_blobs_and_lowers_its_loss() -> None:
    from clustering.bench.lnscc_ceiling import free_embedding_ceiling, knn_label_agreement

    g = np.random.default_rng(0)
    labels = np.arange(90) % 3
    x = g.normal(size=(3, 8))[labels] * 10 + g.normal(size=(90, 8))
    rows = free_embedding_ceiling(x, labels, 3, steps=900, pairs_per_step=500, lr=0.05, dim=8, evaluations=3)
    assert [r["step"] for r in rows] == [300, 600, 900]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["acc"] == 1.0 and rows[-1]["knn_agreement"] == 1.0
    # The check can fail: a random table of the same shape has chance-level neighbours.
    assert knn_label_agreement(g.normal(size=(90, 8)), labels) < 0.6


def test_lnscc_ceiling_command_writes_its_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "lnscc-ceiling", "--steps", "20", "--pairs", "500", "--configs", "published,tau+weighted",
                 "--minutes", "0.05", "--threads", "1", "--eval-every", "1", "--results", str(tmp_path)])  # fmt: skip
    assert code == 0
    with open(tmp_path / "lnscc_ceiling.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    table = [(r["config"], r["step"]) for r in rows if r["model"] == "table"]
    assert table == [(c, s) for c in ("published", "tau+weighted") for s in ("5", "10", "15", "20")]
    network = [r for r in rows if r["model"] == "network"]
    assert sorted(r["config"] for r in network) == ["published", "tau+weighted"]
    assert all(0.0 < float(r["acc"]) <= 1.0 for r in rows)
    assert all(0.0 < float(r["kmeans_z_acc"]) <= 1.0 for r in network)
    assert "10-NN label agreement" in capsys.readouterr().out


def test_lnscc_ceiling_refuses_an_unknown_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "lnscc-ceiling", "--configs", "published,fancy"]) == 2
    assert "unknown LNSCC configuration 'fancy'; valid: published, no-im-neg" in capsys.readouterr().err


def test_degeneracy_table_has_every_variants_epochs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "degeneracy", "--epochs", "2", "--threads", "1", "--results", str(tmp_path)])
    assert code == 0
    with open(tmp_path / "degeneracy.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["variant"], r["epoch"]) for r in rows] == [
        ("uccc", "1"), ("uccc", "2"), ("cc-no-entropy", "1"), ("cc-no-entropy", "2")
    ]  # fmt: skip
    assert all(1 <= int(r["n_nonempty"]) <= 10 and float(r["jsd"]) >= 0.0 for r in rows)
    assert "| epoch | uccc acc |" in (tmp_path / "degeneracy.md").read_text()
    assert "## degeneracy on digits" in capsys.readouterr().out


def test_ablation_self_label_group_sets_the_trainer_option(tmp_path: Path) -> None:
    import json

    code = main(["bench", "ablation", "--dataset", "digits", "--groups", "self-label", "--configs",
                 "default,self-label from 0.6", "--epochs", "2", "--minutes", "5", "--threads", "1",
                 "--results", str(tmp_path)])  # fmt: skip
    assert code == 0
    with open(tmp_path / "ablation.csv", newline="") as fh:
        rows = {r["config"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"default", "self-label from 0.6"}
    configs = {label: json.loads((Path(r["run_dir"]) / "config.json").read_text()) for label, r in rows.items()}
    assert configs["default"]["self_label"] is None and configs["self-label from 0.6"]["self_label"] == 0.6
    def last_row(label: str) -> dict:
        return [json.loads(line) for line in (Path(rows[label]["run_dir"]) / "metrics.jsonl").open()][-1]

    # Epoch 2 of 2 is past 0.6 of the run: its loss has the self-labelling part.
    assert "loss_sl" in last_row("self-label from 0.6") and "loss_sl" not in last_row("default")
