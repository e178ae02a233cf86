"""Training curves from ``metrics.jsonl`` rows (one row per evaluation)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: Keys of a metrics row that are not loss parts.
NON_LOSS_KEYS = {
    "epoch",
    "step",
    "time",
    "elapsed",
    "lr",
    "acc",
    "nmi",
    "ari",
    "jsd",
    "confidence",
    "n_nonempty",
    "cluster_sizes",
}
QUALITY_KEYS = ("acc", "nmi", "ari")


def loss_parts(rows: list[dict[str, Any]]) -> list[str]:
    """``loss`` first, then every other numeric ``loss*`` key in first-seen order (methods name
    their parts differently: loss_ins/loss_clu for UCCC, loss_rgc/... for GCC)."""
    seen: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key in NON_LOSS_KEYS or key in seen or not isinstance(value, (int, float)):
                continue
            if key.startswith("loss"):
                seen.append(key)
    return sorted(seen, key=lambda k: (k != "loss", seen.index(k)))


def metrics_frame(rows: list[dict[str, Any]], run: str) -> pd.DataFrame:
    """Scalar columns of the rows (cluster_sizes dropped), with a ``run`` column for overlays."""
    if not rows:
        return pd.DataFrame(columns=["run", "epoch", "step"])
    records = [
        {k: v for k, v in row.items() if k != "cluster_sizes" and not isinstance(v, (list, dict))}
        for row in rows
    ]
    df = pd.DataFrame.from_records(records)
    df.insert(0, "run", run)
    for col in df.columns:
        if col != "run":
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if "elapsed" in df:
        df["minutes"] = df["elapsed"] / 60.0
    return df


def long_frame(frames: list[pd.DataFrame], keys: list[str], x: str) -> pd.DataFrame:
    """Stack ``keys`` of several runs' frames into (run, x, series, value) rows for one chart."""
    parts = []
    for df in frames:
        if x not in df:
            continue
        present = [k for k in keys if k in df and df[k].notna().any()]
        if not present:
            continue
        melted = df[["run", x, *present]].melt(id_vars=["run", x], var_name="series", value_name="value")
        parts.append(melted.dropna(subset=["value"]))
    if not parts:
        return pd.DataFrame(columns=["run", x, "series", "value"])
    return pd.concat(parts, ignore_index=True)


def sizes_matrix(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(x values, sizes) with sizes of shape (T, C): cluster sizes at every evaluation.

    Rows without sizes are skipped; a differing number of clusters is padded with zeros.
    """
    rows = [r for r in rows if isinstance(r.get("cluster_sizes"), list)]
    if not rows:
        return np.zeros(0), np.zeros((0, 0))
    width = max(len(r["cluster_sizes"]) for r in rows)
    sizes = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        values = [v if isinstance(v, (int, float)) else 0 for v in r["cluster_sizes"]]
        sizes[i, : len(values)] = values
    x = np.array([r.get("epoch", i) or i for i, r in enumerate(rows)], dtype=float)
    return x, sizes


def degeneracy_note(rows: list[dict[str, Any]]) -> str | None:
    """A warning when the latest evaluation has collapsed clusters (the failure UCCC guards
    against): one cluster holding most samples, or fewer than half the clusters non-empty."""
    _, sizes = sizes_matrix(rows)
    if sizes.size == 0:
        return None
    last = sizes[-1]
    total = last.sum()
    if total <= 0:
        return None
    nonempty = int((last > 0).sum())
    share = float(last.max() / total)
    if share > 0.5 and len(last) > 2:
        return (
            f"the largest cluster holds {share:.0%} of the samples "
            f"({nonempty}/{len(last)} clusters non-empty)"
        )
    if nonempty < len(last) / 2:
        return f"only {nonempty} of {len(last)} clusters are non-empty"
    return None
