"""The ``vectors`` data source: a feature matrix from .npy, .npz, .csv or .parquet.

``--root`` is the file. Labels (optional) come from:
- .csv / .parquet: the column named by ``--label-column`` (every other column must be numeric);
- .npz: the array named by ``--label-column``, else ``labels`` or ``y``; the features are the
  array named ``x``, ``X``, ``features`` or ``data``, else the only other array;
- .npy: a plain (N, D) matrix; ``--label-column`` may give an integer column index to split off.
Labels of any type (ints, strings) are mapped to 0..K-1 in sorted order; ``num_classes`` is K.
Without labels the number of clusters must be given (``--num-clusters``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from clustering.data.base import DataError, DataSet, DataSourceSpec, register_source, require_root

SUFFIXES = (".npy", ".npz", ".csv", ".parquet")
FEATURE_KEYS = ("x", "X", "features", "data")
LABEL_KEYS = ("labels", "y")


def _encode_labels(raw: np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    raw = np.asarray(raw)
    if raw.ndim != 1:
        raise DataError(f"labels in {where} must be one-dimensional, got shape {raw.shape}")
    if raw.dtype.kind == "f" and np.isnan(raw).any():
        raise DataError(f"labels in {where} contain missing values (NaN)")
    if raw.dtype == object and any(v is None for v in raw):
        raise DataError(f"labels in {where} contain missing values")
    values, codes = np.unique(raw, return_inverse=True)
    return codes.astype(np.int64), [str(v) for v in values]


def _read_table(path: Path, label_column: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    import pandas as pd

    try:
        frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except ImportError as exc:
        raise DataError(f"reading {str(path)!r} needs an optional package: {exc}") from None
    except Exception as exc:  # pandas raises many parser/IO error types
        raise DataError(f"cannot read {str(path)!r}: {type(exc).__name__}: {exc}") from None
    labels = None
    if label_column is not None:
        if label_column not in frame.columns:
            raise DataError(f"label column {label_column!r} is not in {str(path)!r}; columns: "
                            f"{', '.join(map(str, frame.columns[:20]))}")  # fmt: skip
        labels = frame.pop(label_column).to_numpy()
    bad = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        hint = "" if label_column else " (is one of them the label? pass --label-column NAME)"
        raise DataError(f"non-numeric column(s) {', '.join(bad[:10])} in {str(path)!r}{hint}")
    return frame.to_numpy(dtype=np.float32), labels


def _read_npz(path: Path, label_column: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except Exception as exc:  # zip and format errors
        raise DataError(f"cannot read {str(path)!r}: {type(exc).__name__}: {exc}") from None
    if label_column is not None and label_column not in arrays:
        raise DataError(f"no array {label_column!r} in {str(path)!r}; arrays: {', '.join(arrays)}")
    label_key = label_column or next((k for k in LABEL_KEYS if k in arrays), None)
    labels = arrays.pop(label_key) if label_key else None
    feature_key = next((k for k in FEATURE_KEYS if k in arrays), None)
    if feature_key is None:
        if len(arrays) != 1:
            raise DataError(f"{str(path)!r} holds arrays {', '.join(arrays) or '(none)'}; name the features "
                            f"one of {', '.join(FEATURE_KEYS)}")  # fmt: skip
        feature_key = next(iter(arrays))
    return arrays[feature_key], labels


def _read_npy(path: Path, label_column: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"cannot read {str(path)!r}: {type(exc).__name__}: {exc}") from None
    if label_column is None:
        return x, None
    try:
        col = int(label_column)
    except ValueError:
        raise DataError(f"a .npy file has no named columns; --label-column must be a column index, "
                        f"got {label_column!r}") from None  # fmt: skip
    if x.ndim != 2 or not -x.shape[1] <= col < x.shape[1]:
        raise DataError(f"label column {col} is out of range for an array of shape {x.shape}")
    return np.delete(x, col, axis=1), x[:, col]


def load_vectors(root: str | Path | None = None, split: str = "both", label_column: str | None = None,
                 num_clusters: int | None = None, **_: Any) -> DataSet:  # fmt: skip
    """Load a feature matrix (float32 (N, D)) and its optional labels from the file ``root``."""
    path = require_root(root, "vectors")
    if split != "both":
        raise DataError(f"dataset 'vectors' has no splits; use --split both (got {split!r})")
    if path.is_dir() or path.suffix.lower() not in SUFFIXES:
        raise DataError(f"--root for 'vectors' must be a {', '.join(SUFFIXES)} file, got {str(path)!r}")
    reader = {".npy": _read_npy, ".npz": _read_npz, ".csv": _read_table, ".parquet": _read_table}
    x, raw_labels = reader[path.suffix.lower()](path, label_column)
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise DataError(f"features in {str(path)!r} must be a 2-D (samples, features) matrix, got shape {x.shape}")
    if x.dtype.kind not in "fiub":
        raise DataError(f"features in {str(path)!r} must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"features in {str(path)!r} contain NaN or infinite values; impute or drop them first")
    labels, names = (None, []) if raw_labels is None else _encode_labels(raw_labels, repr(str(path)))
    if labels is not None and len(labels) != len(x):
        raise DataError(f"{len(labels)} labels for {len(x)} samples in {str(path)!r}")
    if labels is None and num_clusters is None:
        raise DataError(f"{str(path)!r} has no labels, so the number of clusters is unknown: pass --num-clusters K "
                        f"(or --label-column NAME if a column holds labels)")  # fmt: skip
    num_classes = len(names) if labels is not None else int(num_clusters)  # type: ignore[arg-type]
    return DataSet(
        inputs=torch.from_numpy(np.ascontiguousarray(x)),
        labels=labels,
        class_names=names,
        name="vectors",
        kind="vector",
        num_classes=num_classes,
        meta={"file": str(path), "label_column": label_column},
    )


register_source(DataSourceSpec("vectors", load_vectors, "a feature matrix (.npy/.npz/.csv/.parquet file as --root; "
                               "--label-column for labels)", True, None))  # fmt: skip
