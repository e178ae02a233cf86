"""A real browser against a live studio: every page opens without an error box.

Starts ``streamlit run app/main.py`` on a free localhost port with an empty runs folder (so the
shipped demo run is what the pages show), opens every page in Debian's headless Chromium via
Playwright (never a downloaded browser) and saves a screenshot per page under
``test-artifacts/screenshots/``. Skips only when Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# (url path, text that appears once the page has drawn its main content)
PAGES = [
    ("", "Launch a run"),
    ("curves", "Loss by part"),
    ("confusion", "Hungarian mapping"),
    ("embedding", "Selection"),
    ("graph", "neighbourhood"),
    ("galleries", "images in range"),
    ("story", "Image histories"),
    ("compare", "Agreement (aligned)"),
]

pytestmark = pytest.mark.browser


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(runs: Path) -> Iterator[str]:
    """Serve the studio on a free localhost port over ``runs``; yield its URL."""
    if chromium_path() is None:
        pytest.skip(
            "Chromium not found at /usr/bin/chromium (apt-get install chromium); browser test skipped"
        )
    pytest.importorskip("playwright.sync_api", reason="playwright's Python package is not installed")
    port = free_port()
    log = open(runs.parent / "streamlit.log", "wb")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app/main.py",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--",
            "--runs",
            str(runs),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"streamlit did not start: {(runs.parent / 'streamlit.log').read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The studio over an empty runs folder: the pages show the shipped demo run."""
    yield from _serve(tmp_path_factory.mktemp("browser_runs"))


@pytest.fixture(scope="module")
def many_cluster_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The studio over one fabricated run of 40 clusters: its confusion matrix (1,600 cells) takes
    the large-matrix path (category axes, clicks on the largest cells only)."""
    from app.logic.synthetic import fabricate_run

    runs = tmp_path_factory.mktemp("browser_runs_40")
    fabricate_run(runs / "forty", n=2000, num_clusters=40)
    yield from _serve(runs)


@contextmanager
def _open(url: str) -> Iterator[tuple[Page, Locator]]:
    """One headless Chromium page at ``url`` and its main area; on leaving, the page must show no
    exception box."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(url, wait_until="domcontentloaded")
            yield page, page.locator('[data-testid="stMain"]')
            errors = page.locator('[data-testid="stException"]')
            assert errors.count() == 0, errors.first.inner_text()[:500]
        finally:
            browser.close()


def _plot_area(page: Page) -> dict[str, float]:
    box = page.locator('[data-testid="stPlotlyChart"] .nsewdrag').first.bounding_box()
    assert box is not None, "no Plotly plot area on the page"
    return box


def _click_confusion_cell(page: Page, row: int, col: int, size: int = 10) -> None:
    """Click the centre of one cell (hovering first: Plotly picks the clicked point by hover)."""
    box = _plot_area(page)
    x = box["x"] + box["width"] * (col + 0.5) / size
    y = box["y"] + box["height"] * (row + 0.5) / size
    page.mouse.move(x - 3, y - 3)
    page.wait_for_timeout(200)
    page.mouse.move(x, y)
    page.wait_for_timeout(200)
    page.mouse.click(x, y)


def _lasso_centre(page: Page, half: float = 150) -> None:
    box = _plot_area(page)
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - half, cy - half)
    page.mouse.down()
    for dx, dy in ((half, -half), (half, half), (-half, half), (-half, -half)):
        page.mouse.move(cx + dx, cy + dy, steps=8)
    page.mouse.up()


def test_every_page_renders_without_error(studio: str) -> None:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            main = page.locator('[data-testid="stMain"]')
            for path, marker in PAGES:
                page.goto(f"{studio}/{path}", wait_until="domcontentloaded")
                # Projections are computed on first view (t-SNE of the demo: seconds), hence the margin.
                main.get_by_text(marker, exact=False).first.wait_for(timeout=120_000)
                page.wait_for_timeout(1500)  # let Plotly and images finish drawing
                name = path or "runs"
                if path == "confusion":  # a clicked cell shows the images behind it
                    _click_confusion_cell(page, row=1, col=4)
                    main.get_by_text("× 4:", exact=False).first.wait_for(timeout=30_000)
                elif path == "embedding":  # a lasso selects points and shows them
                    _lasso_centre(page)
                    main.get_by_text("selected · clusters", exact=False).first.wait_for(timeout=30_000)
                page.wait_for_timeout(1000)
                page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
                errors = page.locator('[data-testid="stException"]')
                assert errors.count() == 0, (
                    f"page {name!r} shows an exception: {errors.first.inner_text()[:500]}"
                )
        finally:
            browser.close()


def test_density_map_lasso_selects_points_in_the_browser(studio: str) -> None:
    """The density view draws an image, not points; a lasso on it must still come back as an
    outline that selects the points inside (Streamlit reports it as ``selection.lasso``)."""
    with _open(f"{studio}/embedding") as (page, main):
        main.get_by_text("Selection", exact=False).first.wait_for(timeout=120_000)
        main.locator('[data-testid="stRadio"]').filter(has_text="Draw").get_by_text("density", exact=True).click()
        try:
            main.locator("g.imagelayer image").first.wait_for(state="attached", timeout=30_000)
        finally:
            page.screenshot(path=str(SHOTS / "embedding-density.png"), full_page=True)
        page.wait_for_timeout(1500)
        _lasso_centre(page)
        main.get_by_text("selected · clusters", exact=False).first.wait_for(timeout=30_000)
        page.screenshot(path=str(SHOTS / "embedding-density.png"), full_page=True)


def test_a_large_confusion_matrix_takes_clicks_on_its_cells(many_cluster_studio: str) -> None:
    """At 40 x 40 the matrix is drawn on category axes with markers on its largest cells only; a
    click on a diagonal cell must still come back as that cell and show its images (the row and
    class pickers, shown while no cell is selected, go away)."""
    with _open(f"{many_cluster_studio}/confusion") as (page, main):
        main.get_by_text("largest cells take clicks", exact=False).first.wait_for(timeout=120_000)
        pickers = main.get_by_text("Cluster row", exact=True)
        pickers.first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        _click_confusion_cell(page, row=7, col=7, size=40)
        pickers.first.wait_for(state="detached", timeout=30_000)
        shown = main.get_by_text("images, most confident first", exact=False).first.inner_text()
        page.screenshot(path=str(SHOTS / "confusion-40.png"), full_page=True)
        # "c12 → 7 × 7: 45 images": a diagonal cell (its cluster's mapped class is its column)
        match = re.match(r"c\d+ → (.+) × (.+): (\d+) images", shown)
        assert match and match[1] == match[2] == "7" and int(match[3]) > 0, shown  # row 7 of 40
