"""The density map (app.logic.density, map_figures.density_map): binning, dominant groups, the image,
and selection by a box or lasso over every point, against naive loops and hand-made cases."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `app` from the repository

from app.logic import density, figures, map_figures, selection  # noqa: E402


def naive_in_polygon(x: float, y: float, xs: list[float], ys: list[float]) -> bool:
    """Textbook even-odd ray casting, one point at a time."""
    inside = False
    j = len(xs) - 1
    for i in range(len(xs)):
        if (ys[i] > y) != (ys[j] > y) and x < (xs[j] - xs[i]) * (y - ys[i]) / (ys[j] - ys[i]) + xs[i]:
            inside = not inside
        j = i
    return inside


def test_grid_cells_cover_the_points_with_square_cells() -> None:
    coords = np.array([[0.0, 0.0], [10.0, 5.0], [9.99, 4.99], [5.0, 2.5]])
    grid = density.Grid.over(coords, bins=10)
    assert (grid.nx, grid.ny, grid.cell) == (10, 5, 1.0)  # 10 along the longer side, square cells
    cells = grid.cells(coords)
    assert cells.tolist() == [0, 4 * 10 + 9, 4 * 10 + 9, 2 * 10 + 5]  # the max edge falls in the last cell
    assert np.allclose(grid.centres(np.array([0, 49])), [[0.5, 0.5], [9.5, 4.5]])


def test_summarise_matches_a_loop_over_cells() -> None:
    rng = np.random.default_rng(0)
    cell_of = rng.integers(0, 30, 2000)
    groups = rng.integers(-1, 7, 2000)  # -1: e.g. an unlabelled group
    values = rng.random(2000)
    s = density.summarise(cell_of, groups, values)
    assert s.cell.tolist() == sorted(set(cell_of.tolist()))
    for i, c in enumerate(s.cell):
        members = cell_of == c
        counts = {g: int(np.sum(groups[members] == g)) for g in set(groups[members].tolist())}
        best = max(counts.values())
        assert s.count[i] == members.sum()
        assert s.top_group[i] == min(g for g, k in counts.items() if k == best)  # ties: the smaller id
        assert s.top_share[i] == pytest.approx(best / members.sum())
        assert s.mean_value[i] == pytest.approx(values[members].mean())


def test_summarise_hand_case_and_without_groups() -> None:
    s = density.summarise(np.array([3, 3, 3, 8]), np.array([5, 2, 5, 2]), None)
    assert s.cell.tolist() == [3, 8] and s.count.tolist() == [3, 1]
    assert s.top_group.tolist() == [5, 2] and np.allclose(s.top_share, [2 / 3, 1.0])
    assert np.isnan(s.mean_value).all()
    plain = density.summarise(np.array([1, 1, 4]), None, np.array([0.2, 0.4, 1.0]))
    assert plain.top_group.tolist() == [-1, -1] and np.allclose(plain.mean_value, [0.3, 1.0])


def test_in_polygon_against_naive_ray_casting_on_a_concave_outline() -> None:
    # An "L" (concave), and a star-like outline with a crossing-free zigzag.
    outlines = [([0, 4, 4, 1, 1, 0], [0, 0, 1, 1, 4, 4]),
                ([0, 2, 4, 3, 4, 2, 0, 1], [0, 1, 0, 2, 4, 3, 4, 2])]  # fmt: skip
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.5, 4.5, size=(3000, 2))
    for xs, ys in outlines:
        got = density.in_polygon(points, xs, ys)
        want = [naive_in_polygon(x, y, xs, ys) for x, y in points]
        assert got.tolist() == want
    xs, ys = outlines[0]
    hand = density.in_polygon(np.array([[0.5, 3.0], [3.0, 0.5], [3.0, 3.0], [2.0, 2.0]]), xs, ys)
    assert hand.tolist() == [True, True, False, False]  # the L's two arms in, its notch out


def test_a_rectangular_lasso_selects_what_the_box_selects() -> None:
    points = np.random.default_rng(2).normal(size=(5000, 2))
    box = density.in_box(points, [-0.5, 1.0], [0.8, -0.3])  # corners in either order
    lasso = density.in_polygon(points, [-0.5, 1.0, 1.0, -0.5], [-0.3, -0.3, 0.8, 0.8])
    assert box.sum() > 100 and box.tolist() == lasso.tolist()
    assert not density.in_box(points, [0.0], [0.0]).any() and not density.in_polygon(points, [0, 1], [0, 1]).any()


def test_render_png_puts_high_y_on_top_and_leaves_empty_cells_transparent() -> None:
    coords = np.array([[0.0, 0.0], [0.1, 0.1], [3.9, 1.9]])  # bottom-left twice, top-right once
    grid = density.Grid.over(coords, bins=4)
    assert (grid.nx, grid.ny) == (4, 2)
    s = density.summarise(grid.cells(coords), np.array([0, 0, 1]), None)
    rgb = np.array([[255, 0, 0], [0, 0, 255]], dtype=np.uint8)
    image = np.asarray(Image.open(io.BytesIO(density.render_png(grid, s, rgb))))
    assert image.shape == (2, 4, 4)
    assert image[1, 0, :3].tolist() == [255, 0, 0] and image[0, 3, :3].tolist() == [0, 0, 255]
    assert image[1, 0, 3] == 255 and image[0, 3, 3] == round(255 * 0.4)  # fullest opaque, one point faint
    assert image[0, 0, 3] == 0 and image[1, 3, 3] == 0  # empty cells


def test_image_bins_grow_with_the_points_within_bounds() -> None:
    assert density.image_bins_for(100) == 64 and density.image_bins_for(10_000) == 150
    assert density.image_bins_for(100_000) == density.IMAGE_BINS == 400


def test_render_png_draws_each_cell_as_a_block_of_whole_pixels() -> None:
    coords = np.array([[0.0, 0.0], [0.1, 0.1], [3.9, 1.9], [2.5, 0.5]])
    grid = density.Grid.over(coords, bins=4)
    s = density.summarise(grid.cells(coords), np.array([0, 0, 1, 2]), None)
    rgb = np.array([[255, 0, 0], [0, 0, 255], [0, 200, 0]], dtype=np.uint8)
    small = np.asarray(Image.open(io.BytesIO(density.render_png(grid, s, rgb))))
    big = np.asarray(Image.open(io.BytesIO(density.render_png(grid, s, rgb, upscale=3))))
    assert big.shape == (6, 12, 4) and (big == small.repeat(3, axis=0).repeat(3, axis=1)).all()
    assert density.upscale_for(grid) == density.IMAGE_PIXELS // 4
    assert density.upscale_for(density.Grid(0.0, 0.0, 1.0, 2000, 10)) == 1  # never below one pixel a cell


def test_hex_to_rgb_reads_both_forms_and_rejects_others() -> None:
    assert density.hex_to_rgb("#1f77b4") == (31, 119, 180)
    assert density.hex_to_rgb("rgb(68, 1, 84)") == (68, 1, 84)
    with pytest.raises(ValueError, match="colour"):
        density.hex_to_rgb("steelblue")


def _decoded_cells(fig, nx: int) -> np.ndarray:  # noqa: ANN001
    """The figure's density image with one pixel per cell (its blocks sampled at their corners)."""
    uri = fig.layout.images[0].source
    import base64

    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    block = image.shape[1] // nx
    assert image.shape[1] == block * nx and image.shape[0] % block == 0  # whole blocks per cell
    return image[::block, ::block]


def test_density_map_colours_cells_as_the_scatter_colours_their_group() -> None:
    rng = np.random.default_rng(3)
    centres = rng.uniform(-50, 50, size=(40, 2))
    groups = np.repeat(np.arange(40), 500)
    coords = centres[groups] + rng.normal(scale=0.5, size=(len(groups), 2))
    names = {g: f"cluster {g}" for g in range(40)}
    fig, hover_grid = map_figures.density_map(coords, groups, names, None, "map", image_bins=100, hover_bins=20)
    grid = density.Grid.over(coords, 100)
    image = _decoded_cells(fig, grid.nx)
    for g in (0, 17, 39):  # the pixel under a cluster's centre has that cluster's colour
        ix, iy = ((centres[g] - [grid.x0, grid.y0]) / grid.cell).astype(int)
        pixel = image[grid.ny - 1 - iy, ix]
        assert tuple(pixel[:3]) == density.hex_to_rgb(figures.color_of(g)) and pixel[3] > 0
    cells = fig.data[0]
    assert len(cells.x) == len(np.unique(hover_grid.cells(coords)))  # one hover marker per non-empty cell
    assert len(fig.data) == 1  # 40 groups > MAX_LEGEND_GROUPS: no legend entries
    few = np.minimum(groups, 4)
    fig5, _ = map_figures.density_map(coords, few, {g: f"c{g}" for g in range(5)}, None, "map")
    assert [t.name for t in fig5.data[1:]] == [f"c{g}" for g in range(5)]


def test_density_map_by_value_has_a_colour_bar_and_viridis_pixels() -> None:
    coords = np.array([[0.0, 0.0], [1.0, 1.0]] * 50)
    values = np.array([0.0, 1.0] * 50)
    fig, _ = map_figures.density_map(coords, None, {}, values, "conf", image_bins=2, hover_bins=2)
    image = _decoded_cells(fig, 2)
    assert tuple(image[1, 0, :3]) == (68, 1, 84)  # Viridis' low end at the bottom-left point
    assert tuple(image[0, 1, :3]) == (253, 231, 37)  # its high end at the top-right one
    assert fig.data[0].marker.showscale and "confidence" in fig.data[0].hovertemplate + fig.data[0].text[0]


def test_selected_positions_by_geometry_or_by_clicked_cells() -> None:
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [9.0, 9.0]])
    positions = np.array([40, 10, 30, 20])  # sample positions of the projected rows
    grid = density.Grid.over(coords, bins=3)
    box = [{"x": [0.5, 2.5], "y": [0.5, 2.5]}]
    assert density.selected_positions(coords, positions, box, [], np.array([]), grid).tolist() == [10, 30]
    lasso = [{"x": [-1, 4, -1], "y": [-1, -1, 4]}]  # a triangle holding (0, 0) and (1, 1)
    assert density.selected_positions(coords, positions, [], lasso, np.array([]), grid).tolist() == [10, 40]
    clicked = grid.cells(coords[[3]])
    assert density.selected_positions(coords, positions, [], [], clicked, grid).tolist() == [20]
    assert density.selected_positions(coords, positions, [], [], np.array([]), grid).tolist() == []


def test_selection_shapes_from_dict_and_attribute_events() -> None:
    box = {"xref": "x", "yref": "y", "x": [0, 1], "y": [2, 3]}
    lasso = {"xref": "x", "yref": "y", "x": [0, 1, 0], "y": [0, 0, 1]}
    event = {"selection": {"points": [], "box": [box], "lasso": [lasso, {"x": [], "y": []}]}}
    assert selection.selection_shapes(event) == ([box], [lasso])  # empty outlines dropped

    class Attr:
        def __init__(self, **kw: object) -> None:
            self.__dict__.update(kw)

    assert selection.selection_shapes(Attr(selection=Attr(box=[box], lasso=[]))) == ([box], [])
    assert selection.selection_shapes(None) == ([], []) and selection.selection_shapes({}) == ([], [])
