"""A map of too many points to draw one by one: binned into an image, selected by geometry.

At 100k points a WebGL scatter takes seconds to ship and draw in the browser (3.7 s measured, the
page-switch target is 2 s). The density view bins the projection instead: one image whose pixels
take the colour of their most frequent group (or their mean value) with an opacity that grows with
their count, plus a coarse grid of invisible markers that carry the hover text. A box or lasso
comes back from the browser as its outline in data coordinates, and the points inside it are found
here, over all points, not over what was drawn.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

DENSITY_ABOVE = 50_000  # the map page draws more points than this as a density image by default
IMAGE_BINS = 400  # at most this many pixels along the longer side of the density image
HOVER_BINS = 80  # cells along the longer side of the hover grid (at most 6,400 markers)
#: About this many pixels along the longer side of the PNG: each cell is drawn as a block of whole
#: pixels, so when the browser stretches the image to the plot its smoothing blurs only block
#: edges, not whole cells (a 64-cell image stretched to 600 px is a blur otherwise).
IMAGE_PIXELS = 800


def image_bins_for(n: int) -> int:
    """Pixels along the longer side of the density image of ``n`` points: about 1.5 sqrt(n), from
    64 to :data:`IMAGE_BINS`. A fixed 400 would draw 2,000 points as faint single pixels; with this
    a map averages several points per non-empty pixel at any size."""
    return int(np.clip(1.5 * np.sqrt(max(n, 1)), 64, IMAGE_BINS))


@dataclass(frozen=True)
class Grid:
    """A regular grid over a projection's bounding box: ``nx`` x ``ny`` cells of equal size."""

    x0: float
    y0: float
    cell: float  # side of a (square) cell, in data units
    nx: int
    ny: int

    @classmethod
    def over(cls, coords: np.ndarray, bins: int) -> Grid:
        """``bins`` cells along the longer side of the points' bounding box, square cells."""
        if bins < 1:
            raise ValueError(f"bins must be at least 1, got {bins}")
        lo, hi = coords.min(axis=0), coords.max(axis=0)
        span = np.maximum(hi - lo, 1e-12)
        cell = float(span.max()) / bins
        nx, ny = (int(np.clip(np.ceil(s / cell), 1, bins)) for s in span)
        return cls(float(lo[0]), float(lo[1]), cell, nx, ny)

    def cells(self, coords: np.ndarray) -> np.ndarray:
        """Flat cell id (row-major from the bottom row, ``iy * nx + ix``) of every point, (N,)."""
        ix = np.clip(((coords[:, 0] - self.x0) / self.cell).astype(np.int64), 0, self.nx - 1)
        iy = np.clip(((coords[:, 1] - self.y0) / self.cell).astype(np.int64), 0, self.ny - 1)
        return iy * self.nx + ix

    def centres(self, cell_ids: np.ndarray) -> np.ndarray:
        """Data coordinates of the centres of ``cell_ids``, (M, 2)."""
        iy, ix = np.divmod(np.asarray(cell_ids, dtype=np.int64), self.nx)
        return np.stack([self.x0 + (ix + 0.5) * self.cell, self.y0 + (iy + 0.5) * self.cell], axis=1)


@dataclass(frozen=True)
class CellSummary:
    """Per non-empty cell: its id, point count, most frequent group and that group's share, and the
    mean of ``values`` (NaN without values)."""

    cell: np.ndarray  # (M,) int64, sorted
    count: np.ndarray  # (M,) int64
    top_group: np.ndarray  # (M,) int64 (-1 without groups)
    top_share: np.ndarray  # (M,) float
    mean_value: np.ndarray  # (M,) float


def summarise(cell_of: np.ndarray, groups: np.ndarray | None, values: np.ndarray | None) -> CellSummary:
    """Counts, dominant groups and mean values per non-empty cell, by sorting (no dense
    cells x groups table: 400 x 400 cells x 200 clusters would be 32M counters)."""
    cell, inverse, count = np.unique(cell_of, return_inverse=True, return_counts=True)
    if groups is None:
        top_group, top_share = np.full(len(cell), -1, dtype=np.int64), np.ones(len(cell))
    else:
        g = np.asarray(groups, dtype=np.int64)
        g_lo = int(g.min())
        width = int(g.max()) - g_lo + 1
        pair, pair_count = np.unique(inverse * width + (g - g_lo), return_counts=True)
        pair_cell = pair // width
        # Largest count first within each cell (ties: the smaller group id), then the first row of each cell.
        order = np.lexsort((pair % width, -pair_count, pair_cell))
        first = order[np.r_[True, pair_cell[order][1:] != pair_cell[order][:-1]]]
        top_group = pair[first] % width + g_lo
        top_share = pair_count[first] / count
    if values is None:
        mean_value = np.full(len(cell), np.nan)
    else:
        mean_value = np.bincount(inverse, weights=np.asarray(values, dtype=float), minlength=len(cell)) / count
    return CellSummary(cell, count, top_group, top_share, mean_value)


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """'#1f77b4' or 'rgb(31, 119, 180)' -> (31, 119, 180)."""
    text = colour.strip()
    if text.startswith("#") and len(text) == 7:
        return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
    if text.startswith("rgb"):
        parts = text[text.index("(") + 1 : text.index(")")].split(",")
        return int(float(parts[0])), int(float(parts[1])), int(float(parts[2]))
    raise ValueError(f"not a '#rrggbb' or 'rgb(r, g, b)' colour: {colour!r}")


def alpha_of(count: np.ndarray) -> np.ndarray:
    """Opacity of a cell from its count: 0.4 for one point, 1.0 for the fullest, on a log scale
    (a t-SNE map's densest cells hold hundreds of times more points than its sparse edges)."""
    count = np.asarray(count, dtype=float)
    top = max(float(count.max(initial=1.0)), 2.0)
    return 0.4 + 0.6 * np.log(np.maximum(count, 1.0)) / np.log(top)


def upscale_for(grid: Grid) -> int:
    """Pixels per cell side so that the image is about :data:`IMAGE_PIXELS` wide (at least 1)."""
    return max(1, IMAGE_PIXELS // max(grid.nx, grid.ny))


def render_png(grid: Grid, summary: CellSummary, rgb: np.ndarray, upscale: int = 1) -> bytes:
    """The image of ``grid``: each non-empty cell in colour ``rgb[i]`` ((M, 3) uint8, one row per
    summarised cell) at :func:`alpha_of` its count, empty cells transparent; top row first; every
    cell an ``upscale`` x ``upscale`` block of pixels."""
    image = np.zeros((grid.ny * grid.nx, 4), dtype=np.uint8)
    image[summary.cell, :3] = rgb
    image[summary.cell, 3] = np.round(255 * alpha_of(summary.count)).astype(np.uint8)
    picture = image.reshape(grid.ny, grid.nx, 4)[::-1]  # PNG rows run top-down, cell rows bottom-up
    if upscale > 1:
        picture = picture.repeat(upscale, axis=0).repeat(upscale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(picture, mode="RGBA").save(buffer, format="PNG", optimize=False, compress_level=1)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


# --- selection by geometry -------------------------------------------------------------------


def in_box(coords: np.ndarray, xs: list[float], ys: list[float]) -> np.ndarray:
    """Mask of the points inside the axis-aligned box spanned by ``xs`` and ``ys`` (edges in)."""
    if len(xs) < 2 or len(ys) < 2:
        return np.zeros(len(coords), dtype=bool)
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    return (coords[:, 0] >= x_lo) & (coords[:, 0] <= x_hi) & (coords[:, 1] >= y_lo) & (coords[:, 1] <= y_hi)


def in_polygon(coords: np.ndarray, xs: list[float], ys: list[float]) -> np.ndarray:
    """Mask of the points inside the closed polygon (``xs``, ``ys``), by the even-odd rule: a point
    is in when a ray from it to +x crosses the outline an odd number of times (as Plotly's lasso
    decides). One pass per edge, vectorised over the points."""
    px, py = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    inside = np.zeros(len(coords), dtype=bool)
    if len(px) < 3:
        return inside
    x, y = coords[:, 0], coords[:, 1]
    for i in range(len(px)):  # the edge from vertex i - 1 to vertex i (the last closes the outline)
        xa, ya, xb, yb = px[i], py[i], px[i - 1], py[i - 1]
        if ya == yb:
            continue  # a horizontal edge is never crossed by a horizontal ray
        straddles = (ya > y) != (yb > y)
        crossing_x = xa + (y - ya) * (xb - xa) / (yb - ya)
        inside ^= straddles & (x < crossing_x)
    return inside


def in_geometry(coords: np.ndarray, boxes: list[dict], lassos: list[dict]) -> np.ndarray:
    """Mask of the points inside any of the boxes or lassos of a Streamlit Plotly selection (each a
    dict with lists ``x`` and ``y`` in data coordinates)."""
    mask = np.zeros(len(coords), dtype=bool)
    for box in boxes:
        mask |= in_box(coords, list(box.get("x", [])), list(box.get("y", [])))
    for lasso in lassos:
        mask |= in_polygon(coords, list(lasso.get("x", [])), list(lasso.get("y", [])))
    return mask


def selected_positions(coords: np.ndarray, positions: np.ndarray, boxes: list[dict], lassos: list[dict],
                       clicked_cells: np.ndarray, hover_grid: Grid) -> np.ndarray:  # fmt: skip
    """Sample positions picked on a density map, sorted: those inside a box or lasso when there is
    one (every point, not only the drawn cells), else those in the clicked hover cells."""
    if boxes or lassos:
        mask = in_geometry(coords, boxes, lassos)
    else:
        mask = np.isin(hover_grid.cells(coords), np.asarray(clicked_cells, dtype=np.int64))
    return np.sort(np.asarray(positions, dtype=np.int64)[mask])
