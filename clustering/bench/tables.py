"""The benchmarks' tables: one printed row per finished run, markdown, and CSV/markdown files."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

TABLE_COLUMNS = ("dataset", "method", "config", "seed", "seconds", "epochs", "acc", "nmi", "ari", "jsd", "n_nonempty")


def print_row(row: dict[str, Any]) -> None:
    print(" ".join(f"{k}={fmt(row.get(k))}" for k in TABLE_COLUMNS), flush=True)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if value > 2 else f"{value:.3f}"
    return str(value)


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (and std of ACC) over seeds for every (dataset, method, config)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["method"], row["config"]), []).append(row)
    out = []
    for (dataset, method, config), items in groups.items():
        def mean(key: str, items=items) -> float | None:
            vals = [r[key] for r in items if isinstance(r.get(key), (int, float))]
            return float(np.mean(vals)) if vals else None

        accs = [r["acc"] for r in items if isinstance(r.get("acc"), float)]
        out.append({"dataset": dataset, "method": method, "config": config, "seeds": len(items),
                    "seconds": mean("seconds"), "epochs": mean("epochs"), "acc": mean("acc"),
                    "acc_std": float(np.std(accs)) if accs else None, "nmi": mean("nmi"), "ari": mean("ari"),
                    "jsd": mean("jsd"), "n_nonempty": mean("n_nonempty")})  # fmt: skip
    return out


def markdown(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def save_table(results: Path, name: str, rows: list[dict[str, Any]], columns: list[str], text: str,
               echo: bool = True) -> None:  # fmt: skip
    """``name.csv`` (``rows``, these columns) and ``name.md`` (``text``) in ``results``."""
    results.mkdir(parents=True, exist_ok=True)
    with open(results / f"{name}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (results / f"{name}.md").write_text(text)
    if echo:
        print(text, flush=True)


def write_tables(rows: list[dict[str, Any]], results: Path, name: str, echo: bool = True) -> None:
    summary = summarize(rows)
    cols = ("dataset", "method", "config", "seeds", "seconds", "epochs", "acc", "acc_std", "nmi", "ari", "jsd",
            "n_nonempty")  # fmt: skip
    text = f"## per seed\n\n{markdown(rows, TABLE_COLUMNS)}\n\n## mean over seeds\n\n{markdown(summary, cols)}\n"
    save_table(results, name, rows, [*TABLE_COLUMNS, "run_dir"], text, echo)
