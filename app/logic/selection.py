"""Plotly selection events (click, box, lasso) -> sample positions, and their export."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def custom_values(point: dict[str, Any]) -> list[Any]:
    """A point's ``customdata`` as a list. Streamlit reports a scalar for 1-D customdata and a
    dict keyed "0", "1", ... (not a list) for 2-D customdata, as observed in Chromium."""
    custom = point.get("customdata")
    if custom is None:
        return []
    if isinstance(custom, dict):
        return [custom[k] for k in sorted(custom, key=lambda k: int(k) if str(k).isdigit() else 0)]
    if isinstance(custom, (list, tuple)):
        return list(custom)
    return [custom]


def _number(value: Any) -> bool:
    numeric = (int, float, np.integer, np.floating)  # JSON numbers, or numpy ones from a figure's own data
    return isinstance(value, numeric) and not isinstance(value, bool) and bool(np.isfinite(value))


def selected_cells(points: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """(row, column) of the confusion-matrix cells whose markers were clicked or boxed."""
    cells = []
    for p in points or []:
        values = custom_values(p)
        if len(values) == 2 and all(_number(v) for v in values):
            cells.append((int(values[0]), int(values[1])))
    return sorted(set(cells))


def points_to_positions(
    points: Sequence[dict[str, Any]], trace_positions: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Sample positions of the selected points, sorted and unique.

    Every trace the studio draws carries the sample position as ``customdata`` (first entry),
    which survives Plotly's per-trace point numbering; ``trace_positions[curve][point_index]``
    is the fallback for points that come without it.
    """
    out: list[int] = []
    for p in points or []:
        values = custom_values(p)
        if values and _number(values[0]):
            out.append(int(values[0]))
            continue
        if trace_positions is None:
            continue
        curve = p.get("curve_number", 0)
        index = p.get("point_index", p.get("point_number"))
        if index is None or not 0 <= curve < len(trace_positions):
            continue
        trace = trace_positions[curve]
        if 0 <= index < len(trace):
            out.append(int(trace[index]))
    return np.unique(np.asarray(out, dtype=np.int64))


def selection_points(event: Any) -> list[dict[str, Any]]:
    """The ``points`` of a ``st.plotly_chart`` selection event (dict- or attribute-style)."""
    if event is None:
        return []
    selection = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    if selection is None:
        return []
    points = selection.get("points") if isinstance(selection, dict) else getattr(selection, "points", None)
    return list(points or [])


def selection_shapes(event: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(boxes, lassos) of a ``st.plotly_chart`` selection event: each a dict with lists ``x`` and
    ``y``, the outline in data coordinates (a box's two corners, a lasso's vertices)."""
    if event is None:
        return [], []
    selection = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    if selection is None:
        return [], []

    def shapes(name: str) -> list[dict[str, Any]]:
        found = selection.get(name) if isinstance(selection, dict) else getattr(selection, name, None)
        return [dict(s) for s in found or [] if s.get("x") and s.get("y")]

    return shapes("box"), shapes("lasso")


def export_frame(
    positions: np.ndarray,
    index: np.ndarray,
    cluster: np.ndarray,
    confidence: np.ndarray,
    label: np.ndarray | None,
    class_names: list[str],
) -> pd.DataFrame:
    """One row per selected sample: its data-set index, cluster, confidence and label."""
    positions = np.asarray(positions, dtype=np.int64)
    df = pd.DataFrame(
        {
            "index": np.asarray(index)[positions],
            "cluster": np.asarray(cluster)[positions],
            "confidence": np.round(np.asarray(confidence, dtype=float)[positions], 4),
        }
    )
    if label is not None:
        labels = np.asarray(label)[positions]
        df["label"] = labels
        df["class"] = [class_names[i] if 0 <= i < len(class_names) else str(i) for i in labels]
    return df


def to_csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()
