"""Plotly figures of an embedding map: every point as a WebGL scatter, or a density image of them."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from app.logic import density
from app.logic.figures import MARGIN, color_of


def point_info(positions: np.ndarray, index: np.ndarray, cluster: np.ndarray, confidence: np.ndarray,
               label: np.ndarray | None) -> np.ndarray:  # fmt: skip
    """Per point: (position, data-set index, cluster, label or -1, confidence) as numbers.

    Carried as customdata: Plotly ships numeric arrays in binary, while a hover string per point
    would make a 10k-point map several times heavier to send and parse. float32 halves it again
    (4 MB less at 100k points) and holds every integer below 2**24 exactly.
    """
    p = np.asarray(positions, dtype=np.int64)
    lab = np.asarray(label)[p] if label is not None else np.full(len(p), -1)
    return np.stack([p, np.asarray(index)[p], np.asarray(cluster)[p], lab,
                     np.round(np.asarray(confidence, dtype=float)[p], 3)], axis=1).astype(np.float32)  # fmt: skip


MAX_LEGEND_GROUPS = 30  # above this many clusters (or labels) the map is one trace without a legend
UNGROUPED_COLOUR = "#bbbbbb"  # a negative group id (e.g. no label)


def group_colours(order: np.ndarray) -> list[str]:
    """The colour of each group of the sorted ids ``order``, the same in every map: by rank."""
    return [color_of(i) if g >= 0 else UNGROUPED_COLOUR for i, g in enumerate(order)]


def _hover(has_labels: bool) -> str:
    label = " · label %{customdata[3]}" if has_labels else ""
    return "#%{customdata[1]} · cluster %{customdata[2]}" + label + " · conf %{customdata[4]:.3f}<extra></extra>"


def map_layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    """What every map shares: lasso by default, the view kept across reruns, no ticks, equal axes."""
    fig.update_layout(title=title, height=height, margin=MARGIN, dragmode="lasso", uirevision="keep",
                      legend={"itemsizing": "constant"})  # fmt: skip
    fig.update_xaxes(showticklabels=False, title=None)
    fig.update_yaxes(showticklabels=False, title=None, scaleanchor="x")
    return fig


def scatter_map(
    coords: np.ndarray,
    info: np.ndarray,
    groups: np.ndarray | None,
    group_names: dict[int, str],
    values: np.ndarray | None,
    title: str,
    has_labels: bool = True,
    height: int = 640,
) -> go.Figure:
    """WebGL scatter of a projection. Categorical ``groups`` give one trace per group (legend
    toggles), or above ``MAX_LEGEND_GROUPS`` groups one trace coloured per point (hover names the
    cluster); otherwise ``values`` (e.g. confidence) colour one trace continuously. Every point
    carries :func:`point_info` as customdata; its first entry, the sample position, is what
    selections report back."""
    fig = go.Figure()
    hover = _hover(has_labels)
    if groups is not None and len(group_names) > MAX_LEGEND_GROUPS:
        # One trace, coloured point by point: with 200 traces (one per cluster) the page's script
        # took 534 ms at 100k points against 113 ms, and a 200-entry legend reads nothing.
        # Numeric colours over a stepped colour scale: a 100k-long array of colour strings took
        # seconds to validate and serialise, numbers go as one binary array.
        order = np.array(sorted(group_names))
        scale: list[list[object]] = []
        for i, colour in enumerate(group_colours(order)):
            scale += [[i / len(order), colour], [(i + 1) / len(order), colour]]
        fig.add_trace(
            go.Scattergl(
                x=coords[:, 0],
                y=coords[:, 1],
                mode="markers",
                name=f"{len(order)} groups",
                marker={"size": 3, "color": np.searchsorted(order, groups) + 0.5, "colorscale": scale,
                        "cmin": 0, "cmax": len(order), "showscale": False},  # fmt: skip
                customdata=info,
                hovertemplate=hover,
                showlegend=False,
            )
        )
    elif groups is not None:
        order = np.array(sorted(group_names))
        for g, colour in zip(order, group_colours(order), strict=True):
            sel = np.flatnonzero(groups == g)
            if len(sel) == 0:
                continue
            fig.add_trace(
                go.Scattergl(
                    x=coords[sel, 0],
                    y=coords[sel, 1],
                    mode="markers",
                    name=group_names[g],
                    marker={"size": 4, "color": colour},
                    customdata=info[sel],
                    hovertemplate=hover,
                )
            )
    else:
        fig.add_trace(
            go.Scattergl(
                x=coords[:, 0],
                y=coords[:, 1],
                mode="markers",
                name="",
                marker={
                    "size": 4,
                    "color": values,
                    "colorscale": "Viridis",
                    "showscale": True,
                    "colorbar": {"title": "confidence"},
                },
                customdata=info,
                hovertemplate=hover,
            )
        )
    return map_layout(fig, title, height)


def density_map(
    coords: np.ndarray,
    groups: np.ndarray | None,
    group_names: dict[int, str],
    values: np.ndarray | None,
    title: str,
    height: int = 640,
    image_bins: int | None = None,
    hover_bins: int = density.HOVER_BINS,
) -> tuple[go.Figure, density.Grid]:
    """A projection too large to draw point by point, as :mod:`app.logic.density` bins it.

    One image (each pixel the colour of its most frequent group, as :func:`scatter_map` colours
    that group, or of its mean value on Viridis; opacity by count) under a coarse grid of
    invisible WebGL markers that carry the hover text (points, dominant group and its share, mean
    value) and take clicks: customdata is the hover cell's id in the returned grid. ``image_bins``
    None: :func:`app.logic.density.image_bins_for` the number of points. A box or lasso
    is resolved over all points by :func:`app.logic.density.in_geometry`.
    """
    order = np.array(sorted(group_names)) if groups is not None else np.array([], dtype=np.int64)
    palette = np.array([density.hex_to_rgb(c) for c in group_colours(order)], dtype=np.uint8).reshape(-1, 3)
    lo, hi = (float(np.nanmin(values)), float(np.nanmax(values))) if values is not None else (0.0, 1.0)
    lut = np.array([density.hex_to_rgb(c) for c in sample_colorscale("Viridis", list(np.linspace(0, 1, 256)))],
                   dtype=np.uint8)  # fmt: skip

    def colours(summary: density.CellSummary) -> np.ndarray:
        if groups is not None:
            return palette[np.searchsorted(order, summary.top_group)]
        scaled = (summary.mean_value - lo) / max(hi - lo, 1e-12)
        return lut[np.clip(np.round(scaled * 255), 0, 255).astype(np.int64)]

    image_grid = density.Grid.over(coords, image_bins or density.image_bins_for(len(coords)))
    image_cells = density.summarise(image_grid.cells(coords), groups, values)
    png = density.render_png(image_grid, image_cells, colours(image_cells), density.upscale_for(image_grid))
    hover_grid = density.Grid.over(coords, hover_bins)
    cells = density.summarise(hover_grid.cells(coords), groups, values)
    centres = hover_grid.centres(cells.cell)
    if groups is not None:
        text = [f"{n:,} points · {share:.0%} {group_names.get(int(g), g)}"
                for n, g, share in zip(cells.count, cells.top_group, cells.top_share, strict=True)]  # fmt: skip
    else:
        text = [f"{n:,} points · mean confidence {v:.3f}" for n, v in zip(cells.count, cells.mean_value, strict=True)]
    marker: dict[str, object] = {"size": 8, "opacity": 0}
    if groups is None:  # the hover markers carry the colour bar of the image's value scale
        marker |= {"color": cells.mean_value, "colorscale": "Viridis", "cmin": lo, "cmax": hi, "showscale": True,
                   "colorbar": {"title": "confidence"}}  # fmt: skip
    fig = go.Figure(
        go.Scattergl(
            x=centres[:, 0],
            y=centres[:, 1],
            mode="markers",
            marker=marker,
            customdata=cells.cell,
            text=text,
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
            name="cells",
        )
    )
    if groups is not None and len(order) <= MAX_LEGEND_GROUPS:  # a key to the colours, nothing to draw
        for g, colour in zip(order, group_colours(order), strict=True):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=group_names[int(g)],
                                     marker={"size": 8, "color": colour}))  # fmt: skip
    x1, y1 = image_grid.x0 + image_grid.nx * image_grid.cell, image_grid.y0 + image_grid.ny * image_grid.cell
    fig.add_layout_image(source=density.data_uri(png), xref="x", yref="y", x=image_grid.x0, y=y1,
                         sizex=x1 - image_grid.x0, sizey=y1 - image_grid.y0, sizing="stretch",
                         xanchor="left", yanchor="top", layer="below")  # fmt: skip
    map_layout(fig, title, height).update_layout(plot_bgcolor="white")
    fig.update_xaxes(range=[image_grid.x0, x1], showgrid=False, zeroline=False)
    fig.update_yaxes(range=[image_grid.y0, y1], showgrid=False, zeroline=False)
    return fig, hover_grid
