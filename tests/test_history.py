"""history.bin: one record per evaluation, torn tails ignored, rewound on resume, written by runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from clustering.history import HEADER_BYTES, HISTORY_FILE, HistoryWriter, read_history, record_bytes
from clustering.runs import RunWriter, read_metrics


def _write(run_dir: Path, steps: list[int], n: int = 5) -> list[np.ndarray]:
    writer = HistoryWriter(run_dir, n)
    clusters = []
    for i, step in enumerate(steps):
        cluster = (np.arange(n) + i) % 3
        writer.append(step, i + 1, cluster, np.linspace(0.1, 0.9, n) + 0.01 * i)
        clusters.append(cluster)
    return clusters


def test_records_read_back_exactly(tmp_path: Path) -> None:
    clusters = _write(tmp_path, [7, 14, 21])
    history = read_history(tmp_path)
    assert history is not None and len(history) == 3 and history.num_samples == 5
    assert history.steps.tolist() == [7, 14, 21] and history.epochs.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(history.cluster, np.stack(clusters))
    np.testing.assert_allclose(history.confidence[2], np.linspace(0.1, 0.9, 5) + 0.02, atol=1e-3)  # float16
    assert (tmp_path / HISTORY_FILE).stat().st_size == HEADER_BYTES + 3 * record_bytes(5)


def test_a_torn_last_record_is_ignored_and_the_next_append_starts_on_a_boundary(tmp_path: Path) -> None:
    _write(tmp_path, [7, 14])
    path = tmp_path / HISTORY_FILE
    with open(path, "ab") as fh:
        fh.write(b"\x01" * (record_bytes(5) // 2))  # a kill inside an append
    history = read_history(tmp_path)
    assert history is not None and history.steps.tolist() == [7, 14]
    del history
    HistoryWriter(tmp_path, 5).append(21, 3, np.zeros(5, np.int64), np.ones(5))
    history = read_history(tmp_path)
    assert history is not None and history.steps.tolist() == [7, 14, 21]
    assert history.cluster[2].tolist() == [0] * 5


def test_rewind_keeps_records_up_to_the_checkpoint(tmp_path: Path) -> None:
    _write(tmp_path, [7, 14, 21, 28])
    assert HistoryWriter(tmp_path, 5).rewind(14) == 2
    history = read_history(tmp_path)
    assert history is not None and history.steps.tolist() == [7, 14]


def test_run_writer_rewind_also_rewinds_the_history(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path)
    for step in (7, 14, 21):
        writer.append_metrics({"step": step, "epoch": step // 7})
        writer.append_history(step, step // 7, np.array([0, 1, 1]), np.array([0.5, 0.6, 0.7]))
    writer.rewind(14)
    history = read_history(tmp_path)
    assert history is not None and history.steps.tolist() == [7, 14]
    assert [r["step"] for r in read_metrics(tmp_path)] == [7, 14]


@pytest.mark.parametrize("content", [b"", b"CSHIST0", b"NOTAHIST" + b"\x00" * 40, b"CSHIST01" + np.int64(4).tobytes()])
def test_missing_foreign_or_empty_files_read_as_no_history(tmp_path: Path, content: bytes) -> None:
    assert read_history(tmp_path) is None  # no file
    (tmp_path / HISTORY_FILE).write_bytes(content)
    assert read_history(tmp_path) is None


def test_a_file_of_another_size_is_started_over(tmp_path: Path) -> None:
    _write(tmp_path, [7, 14], n=5)
    HistoryWriter(tmp_path, 4).append(3, 1, np.zeros(4, np.int64), np.ones(4))
    history = read_history(tmp_path)
    assert history is not None and history.num_samples == 4 and history.steps.tolist() == [3]


def test_cluster_ids_beyond_uint16_stop_the_history_instead_of_wrapping(tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path, 3)
    writer.append(1, 1, np.array([0, 1, 2]), np.ones(3))
    writer.append(2, 2, np.array([0, 70_000, 2]), np.ones(3))
    history = read_history(tmp_path)
    assert history is not None and history.steps.tolist() == [1]
    os.truncate(tmp_path / HISTORY_FILE, HEADER_BYTES)
    assert read_history(tmp_path) is None


def test_a_training_run_writes_one_record_per_evaluation(tmp_path: Path) -> None:
    from clustering.config import TrainConfig
    from clustering.data import load_dataset
    from clustering.train import train

    config = TrainConfig(method="uccc", dataset="digits", image_size=12, batch_size=256, max_steps=16, eval_every=1,
                         out=str(tmp_path), run_id="r", threads=1, projections="none")  # fmt: skip
    result = train(config, progress=False, data=load_dataset("digits", image_size=12))
    history, rows = read_history(result.run_dir), read_metrics(result.run_dir)
    assert history is not None and history.steps.tolist() == [r["step"] for r in rows] == [7, 14, 16]
    assert history.num_samples == 1797
    final = np.load(result.run_dir / "predictions.npz")
    np.testing.assert_array_equal(history.cluster[-1], final["cluster"])
    np.testing.assert_allclose(history.confidence[-1], final["confidence"], atol=1e-3)
