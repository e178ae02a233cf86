"""The ``vectors`` data source (LNSCC's non-image setting) and training LNSCC on it end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clustering.data import DataError, load_dataset


def _matrix(n: int = 40, d: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    return (rng.normal(size=(n, d)) + 5 * y[:, None]).astype(np.float64), y


def test_npy_unlabelled_needs_num_clusters(tmp_path: Path) -> None:
    x, _ = _matrix()
    np.save(tmp_path / "f.npy", x)
    with pytest.raises(DataError, match="--num-clusters"):
        load_dataset("vectors", tmp_path / "f.npy")
    data = load_dataset("vectors", tmp_path / "f.npy", num_clusters=4)
    assert data.kind == "vector" and data.labels is None and data.num_classes == 4
    assert data.inputs.dtype.is_floating_point and data.inputs.shape == (40, 5)


def test_npy_label_column_index(tmp_path: Path) -> None:
    x, y = _matrix()
    np.save(tmp_path / "f.npy", np.hstack([x, y[:, None]]))
    data = load_dataset("vectors", tmp_path / "f.npy", label_column="-1")
    assert data.inputs.shape == (40, 5) and (data.labels == y).all()
    with pytest.raises(DataError, match="column index"):
        load_dataset("vectors", tmp_path / "f.npy", label_column="y")


@pytest.mark.parametrize("label_key", ["labels", "y"])
def test_npz_labels(tmp_path: Path, label_key: str) -> None:
    x, y = _matrix()
    np.savez(tmp_path / "f.npz", x=x, **{label_key: y})
    data = load_dataset("vectors", tmp_path / "f.npz")
    assert (data.labels == y).all() and data.num_classes == 4 and str(data.inputs.dtype) == "torch.float32"


def test_csv_string_labels_and_parquet(tmp_path: Path) -> None:
    x, y = _matrix()
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)])
    frame["kind"] = np.array(["ant", "bee", "cat", "dog"])[y]
    frame.to_csv(tmp_path / "f.csv", index=False)
    data = load_dataset("vectors", tmp_path / "f.csv", label_column="kind")
    assert data.class_names == ["ant", "bee", "cat", "dog"] and (data.labels == y).all()
    with pytest.raises(DataError, match="non-numeric column"):
        load_dataset("vectors", tmp_path / "f.csv")
    with pytest.raises(DataError, match="not in"):
        load_dataset("vectors", tmp_path / "f.csv", label_column="nope")
    frame.to_parquet(tmp_path / "f.parquet")
    data = load_dataset("vectors", tmp_path / "f.parquet", label_column="kind")
    assert data.inputs.shape == (40, 5) and data.num_classes == 4


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs --root"):
        load_dataset("vectors", None)
    (tmp_path / "f.txt").write_text("1,2\n")
    with pytest.raises(DataError, match=".npy"):
        load_dataset("vectors", tmp_path / "f.txt")
    x, y = _matrix()
    x[3, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=y)
    with pytest.raises(DataError, match="NaN"):
        load_dataset("vectors", tmp_path / "nan.npz")


def test_cli_trains_lnscc_on_a_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clustering.cli import main

    x, y = _matrix(n=80, d=6)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)])
    frame["y"] = y
    frame.to_csv(tmp_path / "f.csv", index=False)
    code = main(["train", "--method", "lnscc", "--dataset", "vectors", "--root", str(tmp_path / "f.csv"),
                 "--label-column", "y", "--out", str(tmp_path / "runs"), "--max-steps", "3", "--threads", "1",
                 "--no-progress", "--run-id", "r", "--projections", "none"])  # fmt: skip
    assert code == 0
    config = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
    assert config["label_column"] == "y" and config["backbone"] == "mlp" and config["num_clusters"] == 4
    assert main(["eval", str(tmp_path / "runs" / "r"), "--json"]) == 0
    assert '"acc"' in capsys.readouterr().out


def test_cli_refuses_image_method_on_vectors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clustering.cli import main

    x, y = _matrix()
    np.savez(tmp_path / "f.npz", x=x, y=y)
    code = main(["train", "--method", "cc", "--dataset", "vectors", "--root", str(tmp_path / "f.npz"),
                 "--out", str(tmp_path / "runs"), "--max-steps", "1", "--projections", "none"])  # fmt: skip
    assert code == 2
    assert "lnscc" in capsys.readouterr().err
