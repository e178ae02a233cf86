"""Plotly figure builders (pure: data in, figure out), shared by the pages and the benchmark."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

PALETTE = qualitative.Plotly + qualitative.D3 + qualitative.Light24
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def color_of(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def line_chart(long: pd.DataFrame, x: str, title: str, y_title: str = "", height: int = 300) -> go.Figure:
    """One line per (run, series): colour by series for one run, by run (dash by series) for several."""
    fig = go.Figure()
    runs = list(dict.fromkeys(long["run"])) if not long.empty else []
    series = list(dict.fromkeys(long["series"])) if not long.empty else []
    for r_i, run in enumerate(runs):
        for s_i, name in enumerate(series):
            part = long[(long["run"] == run) & (long["series"] == name)]
            if part.empty:
                continue
            if len(runs) == 1:
                color, dash, label = color_of(s_i), "solid", name
            else:
                color, dash = color_of(r_i), DASHES[s_i % len(DASHES)]
                label = f"{run} · {name}" if len(series) > 1 else run
            fig.add_trace(
                go.Scatter(
                    x=part[x],
                    y=part["value"],
                    mode="lines+markers" if len(part) < 40 else "lines",
                    name=label,
                    line={"color": color, "dash": dash},
                    marker={"size": 4},
                )
            )
    fig.update_layout(
        title=title,
        height=height,
        margin=MARGIN,
        xaxis_title=x,
        yaxis_title=y_title,
        legend={"orientation": "h", "y": -0.25},
        uirevision="keep",
    )
    return fig


def sizes_chart(x: np.ndarray, sizes: np.ndarray, title: str, height: int = 320) -> go.Figure:
    """Stacked area of every cluster's size over time: a collapse shows as one band taking over."""
    fig = go.Figure()
    for c in range(sizes.shape[1] if sizes.ndim == 2 else 0):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=sizes[:, c],
                name=f"cluster {c}",
                stackgroup="sizes",
                mode="lines",
                line={"width": 0.5, "color": color_of(c)},
            )
        )
    fig.update_layout(
        title=title,
        height=height,
        margin=MARGIN,
        xaxis_title="epoch",
        yaxis_title="samples",
        legend={"orientation": "h", "y": -0.25},
        uirevision="keep",
    )
    return fig


#: Above this many cells the matrix drops per-cell text and markers on most cells (200 x 200 = 40,000).
CONFUSION_TEXT_CELLS = 900
#: A large matrix takes clicks on its largest cells only (every mapped cluster's diagonal cell and
#: the most populated off-diagonal ones): one marker and hover string per non-empty cell made a
#: 200 x 200 figure 1.6 MB and its page switch 1.3-3.6 s in the browser. Any other cell is one pick
#: away in the page's row/class selectors; the heatmap itself hovers every cell.
#: The markers are SVG (at most this many, or 900 on a small matrix): a WebGL context costs more in
#: the browser than they do.
CONFUSION_CLICK_CELLS = 2000


def _unique_labels(labels: list[str]) -> list[str]:
    """Category axes merge equal labels: number repeated ones so every row and column stays."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def confusion_figure(
    values: np.ndarray, row_labels: list[str], col_labels: list[str], normalized: bool, height: int = 520
) -> go.Figure:
    """Heatmap plus an invisible marker per clickable cell: Plotly selection events fire on
    markers, so clicking (or box-selecting) a cell reports it; customdata carries (row, col).

    A small matrix has cell text and a marker on every cell. A large one (many clusters) is drawn on
    category axes named by the labels, so the heatmap's own hover names every cell from the axes with
    no per-cell string; it sends its values as a compact typed array (float32 when normalised), keeps
    markers on its ``CONFUSION_CLICK_CELLS`` largest cells only, and grows in height;
    Plotly's zoom reads any region of it."""
    rows, cols = values.shape
    big = rows * cols > CONFUSION_TEXT_CELLS
    fmt = (lambda v: f"{v:.2f}") if normalized else (lambda v: f"{int(v)}")
    if big:
        x_of, y_of = _unique_labels(col_labels), _unique_labels(row_labels)
        z = values.astype(np.float32) if normalized else values.astype(np.int32)
        heat = go.Heatmap(
            z=z, x=x_of, y=y_of, colorscale="Blues", showscale=True,
            hovertemplate="%{y} × %{x}: %{z" + (":.2f" if normalized else "") + "}<extra></extra>",
        )  # fmt: skip
        flat = values.ravel()
        nonzero = np.flatnonzero(flat)
        keep = nonzero[np.argsort(-flat[nonzero], kind="stable")[:CONFUSION_CLICK_CELLS]]
        rr, cc = np.divmod(np.sort(keep), cols)
        mx, my = [x_of[c] for c in cc], [y_of[r] for r in rr]
    else:
        heat = go.Heatmap(
            z=values, x=list(range(cols)), y=list(range(rows)),
            text=[[fmt(v) for v in row] for row in values], texttemplate="%{text}",
            colorscale="Blues", showscale=False, hoverinfo="skip",
        )  # fmt: skip
        rr, cc = (a.ravel() for a in np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij"))
        mx, my = cc, rr
    fig = go.Figure(heat)
    fig.add_trace(
        go.Scatter(
            x=mx,
            y=my,
            mode="markers",
            marker={"size": max(3, min(28, 560 // max(rows, cols, 1))), "opacity": 0.01, "symbol": "square"},
            customdata=np.stack([rr, cc], axis=1),
            showlegend=False,
            hovertemplate="%{text}<extra></extra>",
            text=[f"{row_labels[r]} × {col_labels[c]}: {fmt(values[r, c])}" for r, c in zip(rr, cc, strict=True)],
        )
    )
    # No drag mode: Streamlit turns clicks into selections only when the chart is not in
    # box/lasso mode (box selection stays available from the toolbar).
    fig.update_layout(height=max(height, min(1400, 5 * rows)) if big else height, margin=MARGIN, dragmode=False)
    # Fixed ranges (row 0 on top): autorange would pad the axes for the markers' size, and the
    # matrix would no longer fill the plot area (category positions are indices, so one rule fits both).
    fig.update_xaxes(title="true class", side="top", showticklabels=cols <= 60, range=[-0.5, cols - 0.5])
    fig.update_yaxes(title="cluster → mapped class", showticklabels=rows <= 60, range=[rows - 0.5, -0.5])
    if big:  # category axes: the labels are the coordinates
        fig.update_xaxes(type="category")
        fig.update_yaxes(type="category")
    else:
        fig.update_xaxes(tickmode="array", tickvals=list(range(cols)), ticktext=col_labels)
        fig.update_yaxes(tickmode="array", tickvals=list(range(rows)), ticktext=row_labels)
    return fig


def histogram(values: np.ndarray, title: str, x_title: str, height: int = 260) -> go.Figure:
    fig = go.Figure(go.Histogram(x=values, nbinsx=40, marker={"color": color_of(0)}))
    fig.update_layout(
        title=title, height=height, margin=MARGIN, xaxis_title=x_title, yaxis_title="images", bargap=0.05
    )
    return fig


def sizes_heatmap(epochs: np.ndarray, sizes: np.ndarray, title: str, height: int = 360) -> go.Figure:
    """Cluster sizes over time as a heatmap (rows: clusters, largest at the end first): readable at
    200 clusters where a stacked area is not; a collapse shows as one bright row."""
    order = np.argsort(-sizes[-1], kind="stable") if sizes.size else np.zeros(0, dtype=int)
    z = sizes[:, order].T if sizes.size else np.zeros((0, 0))
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=epochs,
            y=[f"c{c}" for c in order],
            colorscale="Viridis",
            colorbar={"title": "samples"},
            hovertemplate="epoch %{x}<br>cluster %{y}: %{z} samples<extra></extra>",
        )
    )
    fig.update_layout(title=title, height=height, margin=MARGIN, xaxis_title="epoch", uirevision="keep")
    fig.update_yaxes(title="cluster (by final size)", autorange="reversed", showticklabels=len(order) <= 40)
    return fig


def sankey(links: pd.DataFrame, source_names: dict[int, str], target_names: dict[int, str], title: str,
           height: int = 520) -> go.Figure:  # fmt: skip
    """Samples flowing from one evaluation's clusters (left) to another's (right)."""
    sources = sorted(set(links["source"].tolist()))
    targets = sorted(set(links["target"].tolist()))
    left = {c: i for i, c in enumerate(sources)}
    right = {c: len(sources) + i for i, c in enumerate(targets)}
    labels = [source_names.get(c, f"c{c}") for c in sources] + [target_names.get(c, f"c{c}") for c in targets]
    colors = [color_of(c) for c in sources] + [color_of(c) for c in targets]
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={"label": labels, "color": colors, "pad": 6, "thickness": 14},
            link={
                "source": [left[c] for c in links["source"]],
                "target": [right[c] for c in links["target"]],
                "value": links["samples"].tolist(),
                "color": [
                    "rgba(120,120,120,0.25)" if s != t else "rgba(60,120,200,0.35)"
                    for s, t in zip(links["source"], links["target"], strict=True)
                ],  # fmt: skip
            },
        )
    )
    fig.update_layout(title=title, height=height, margin=MARGIN)
    return fig


def trajectory_chart(traj: pd.DataFrame, title: str, height: int = 280) -> go.Figure:
    """One image's cluster (steps) and confidence (line, right axis) at every evaluation."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=traj["epoch"], y=traj["cluster"], mode="lines+markers", line={"shape": "hv"},
                             name="cluster", marker={"size": 5, "color": color_of(0)}))  # fmt: skip
    fig.add_trace(go.Scatter(x=traj["epoch"], y=traj["confidence"], mode="lines", name="confidence",
                             yaxis="y2", line={"color": color_of(1)}))  # fmt: skip
    fig.update_layout(
        title=title, height=height, margin=MARGIN, xaxis_title="epoch", yaxis={"title": "cluster"},
        yaxis2={"title": "confidence", "overlaying": "y", "side": "right", "range": [0, 1]},
        legend={"orientation": "h", "y": -0.3},
    )  # fmt: skip
    return fig


def contingency_heatmap(counts: np.ndarray, row_labels: list[str], col_labels: list[str], title: str,
                        height: int = 520) -> go.Figure:  # fmt: skip
    """A plain counts heatmap (two runs' clusters): no per-cell markers, so 200 x 200 stays light."""
    fig = go.Figure(
        go.Heatmap(
            z=counts,
            x=col_labels,
            y=row_labels,
            colorscale="Blues",
            hovertemplate="A %{y} × B %{x}: %{z}<extra></extra>",
        )
    )
    fig.update_layout(title=title, height=height, margin=MARGIN)
    fig.update_xaxes(title="run B's cluster (matched order)", type="category", showticklabels=len(col_labels) <= 40)
    fig.update_yaxes(title="run A's cluster", type="category", autorange="reversed",
                     showticklabels=len(row_labels) <= 40)  # fmt: skip
    return fig
