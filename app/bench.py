"""Studio speed figures: ``python -m app.bench [--run RUN_DIR] [--n 10000]``.

Prints, for a 10k-sample run (fabricated by default, or a real run directory):

1. projection: t-SNE and UMAP of z, first computation vs loading from the on-disk cache;
2. community-graph slider: graph statistics for a 2,048-image sample per (threshold, k);
3. page switch: every page rendered once cold and then warm, through Streamlit's AppTest
   (server-side script time: what a page switch costs before the browser draws).

A fabricated run claims the ``mnist-test`` data set under ``/work/shared/data/mnist-test`` when
that folder exists, so the pages also load and show real images.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from app.logic import graphstats, projection
from app.logic.predictions import from_arrays
from app.logic.runtime import ENV_VAR, limit_threads
from app.logic.synthetic import fabricate_predictions, fabricate_run
from clustering.runs import PREDICTIONS_FILE, read_predictions

PAGES = [
    "views/runs.py",
    "views/curves.py",
    "views/story.py",
    "views/confusion.py",
    "views/embedding.py",
    "views/graph.py",
    "views/galleries.py",
    "views/compare.py",
]
MNIST = Path("/work/shared/data/mnist-test")


def bench_projection(
    run_dir: Path, cache: Path, n_points: int | None, methods: list[str]
) -> dict[str, float]:
    pred = from_arrays(read_predictions(run_dir) or {})
    assert pred is not None and pred.z is not None, f"{run_dir} has no usable predictions"
    fp = projection.predictions_fingerprint(run_dir / PREDICTIONS_FILE)
    out = {}
    for method in methods:
        params = projection.ProjectionParams(method=method, source="z", subsample=n_points)
        t0 = time.perf_counter()
        _, coords, hit = projection.load_or_compute(cache, fp, pred.features("z"), params)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, _, hit2 = projection.load_or_compute(cache, fp, pred.features("z"), params)
        cached = time.perf_counter() - t0
        m = len(coords)
        print(
            f"projection {method:<5} {m:>6} points: first {first:7.2f} s{' (was cached)' if hit else ''}, "
            f"cached {cached * 1000:6.1f} ms (hit={hit2})"
        )
        out[f"{method}_first_s"], out[f"{method}_cached_s"] = first, cached
    return out


def bench_slider(run_dir: Path, size: int = 2048) -> dict[str, float]:
    pred = from_arrays(read_predictions(run_dir) or {})
    assert pred is not None and pred.z is not None and pred.probs is not None
    positions = graphstats.sample_positions(len(pred), size, 0)
    t0 = time.perf_counter()
    sample = graphstats.build_sample(pred.z, pred.probs, pred.label, positions)
    build = time.perf_counter() - t0
    print(
        f"graph sample of {len(sample)}: similarity matrix built once in {build * 1000:.0f} ms "
        "(cached per sample)"
    )
    graphstats.graph_stats(sample, 0.3, 2)  # warm-up (first torch calls allocate)
    results = {}
    for k in (1, 2, 3, 4):
        times = []
        for thr in (0.1, 0.258, 0.4, 0.6):
            t0 = time.perf_counter()
            graphstats.graph_stats(sample, thr, k)
            graphstats.peers_of(sample, pred.z[positions[0]], thr, k, exclude=int(positions[0]))
            times.append(time.perf_counter() - t0)
        results[f"k{k}"] = statistics.median(times)
        print(
            f"slider recompute, k={k}: median {results[f'k{k}'] * 1000:6.0f} ms, "
            f"max {max(times) * 1000:6.0f} ms "
            f"(statistics + one image's peers, {len(sample)} samples)"
        )
    return results


def bench_pages(runs: Path, n_points: int, rounds: int = 2, run_id: str | None = None) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    main = Path(__file__).resolve().parent / "main.py"
    at = AppTest.from_file(str(main), default_timeout=600)
    at.session_state["runs_folder"] = str(runs)
    if run_id:
        at.session_state["_next_run_id"] = run_id
    # Show the whole run on the map (the projection timed above), not the page's 5k default.
    at.session_state["map_points"] = n_points
    t0 = time.perf_counter()
    at.run()
    print(f"studio start (first script run, imports included): {time.perf_counter() - t0:.2f} s")
    out = {}
    for r in range(rounds):
        for page in PAGES:
            t0 = time.perf_counter()
            at.switch_page(page).run()
            dt = time.perf_counter() - t0
            if at.exception:
                raise RuntimeError(f"{page}: {at.exception[0].value}")
            label = "cold" if r == 0 else "warm"
            out[f"{label}:{page}"] = dt
            print(f"page switch ({label}) {page:<22} {dt * 1000:7.0f} ms")
    return out


# (nav link text, text drawn once the page's main content is there)
BROWSER_PAGES = [
    ("Training curves", "Loss by part"),
    ("Confusion matrix", "Hungarian mapping"),
    ("Embedding map", "Selection"),
    ("Community graph", "neighbourhood"),
    ("Galleries & failures", "images in range"),
    ("Run story", "Image histories"),
    ("Compare runs", "Agreement (aligned)"),
    ("Runs", "Launch a run"),
]


def bench_browser(runs: Path, rounds: int = 2) -> dict[str, float]:
    """Real page switches: click the sidebar link, wait for the page's content, in headless
    Chromium against ``streamlit run`` (what a user waits for, rendering included)."""
    import os
    import socket
    import subprocess
    import sys
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--", "--runs", str(runs)],
        cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    out: dict[str, float] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            main = page.locator('[data-testid="stMain"]')
            main.get_by_text("Launch a run").first.wait_for(timeout=60_000)
            for r in range(rounds):
                for link, marker in BROWSER_PAGES:
                    t0 = time.perf_counter()
                    page.locator('[data-testid="stSidebarNav"]').get_by_text(link, exact=True).click()
                    main.get_by_text(marker, exact=False).first.wait_for(timeout=180_000)
                    dt = time.perf_counter() - t0
                    label = "cold" if r == 0 else "warm"
                    out[f"{label}:{link}"] = dt
                    print(f"browser page switch ({label}) {link:<22} {dt * 1000:7.0f} ms")
            browser.close()
    finally:
        os.killpg(proc.pid, 15)
    return out


def bench_libraries(sizes: list[int], libraries: list[str], threads: int) -> dict[tuple[str, int], float]:
    """Seconds per (library, points) for the maps a run writes: t-SNE by openTSNE (FFT) and by
    scikit-learn (Barnes-Hut), UMAP by umap-learn, all on the same fabricated z (128-d, 10 clusters).
    UMAP's numba compilation is paid once, before timing."""
    from clustering import projections

    if "umap" in libraries:
        projections.compute(fabricate_predictions(500, seed=1)["z"], "umap", threads=threads)
    out: dict[tuple[str, int], float] = {}
    for n in sizes:
        z = fabricate_predictions(n)["z"].astype(np.float32)
        for library in libraries:
            method, backend = ("umap", None) if library == "umap" else ("tsne", library)
            t0 = time.perf_counter()
            projections.compute(z, method, threads=threads, backend=backend)
            out[(library, n)] = time.perf_counter() - t0
            print(f"{library:<9} {n:>7,} points, {threads} thread(s): {out[(library, n)]:8.1f} s", flush=True)
    for n in sizes:
        if ("sklearn", n) in out and ("opentsne", n) in out:
            print(f"{n:,} points: openTSNE {out[('sklearn', n)] / out[('opentsne', n)]:.1f}x faster than sklearn")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="a real run directory (default: fabricate a 10k-sample run)")
    parser.add_argument("--n", type=int, default=10_000, help="samples of the fabricated run")
    parser.add_argument("--clusters", type=int, default=10, help="clusters (and classes) of the fabricated run")
    parser.add_argument("--points", type=int, default=0, help="projection subsample (0 = all points)")
    parser.add_argument("--methods", default="tsne,umap", help="projections to time")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--browser", action="store_true", help="also time page switches in headless Chromium")
    parser.add_argument(
        "--workdir", type=Path, help="keep the runs folder here (reruns reuse its projections)"
    )
    parser.add_argument("--libraries", metavar="SIZES",
                        help="only compare the projection libraries on these point counts (e.g. 10000,60000)")
    parser.add_argument("--which", default="opentsne,sklearn,umap", help="libraries for --libraries")
    parser.add_argument("--threads", type=int, default=1, help="threads per projection for --libraries")
    args = parser.parse_args(argv)
    if args.libraries:
        sizes = [int(v) for v in args.libraries.split(",") if v]
        bench_libraries(sizes, [w for w in args.which.split(",") if w], args.threads)
        return 0
    print(f"studio threads: {limit_threads()} (${ENV_VAR})")

    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="studio-bench-"))
    try:
        runs = tmp / "runs"
        if args.run and (runs / args.run.name).exists():
            run_dir = runs / args.run.name
        elif args.run:
            run_dir = runs / args.run.name
            shutil.copytree(args.run, run_dir, ignore=shutil.ignore_patterns("checkpoints", "cache"))
        elif (runs / f"bench-{args.n}").exists():
            run_dir = runs / f"bench-{args.n}"
        else:
            have_mnist = MNIST.is_dir() and args.n <= 10_000
            kind = {"n": args.n, "num_clusters": args.clusters, "dataset": "mnist-test" if have_mnist else "digits",
                    "root": str(MNIST) if have_mnist else None, "image_size": 28 if have_mnist else 16, "epochs": 50}
            # The run's own maps (random points: opening one is what is timed) and a second run of
            # the same data for the Compare page, with its own maps too: the studio may open either
            # first, and a map that waits for a click is not what a page switch should time.
            run_dir = fabricate_run(runs / f"bench-{args.n}", **kind, own_maps=("tsne", "umap"))
            fabricate_run(runs / f"bench-{args.n}-b", **kind, seed=1, own_maps=("tsne", "umap"))
        n = len(np.load(run_dir / PREDICTIONS_FILE)["cluster"])
        print(f"run: {run_dir.name} ({n:,} samples)")
        methods = [m for m in args.methods.split(",") if m]
        if methods:
            bench_projection(run_dir, run_dir / "cache", args.points or None, methods)
        if n > 5000 and "tsne" in methods and not args.points:
            # The map's default view: a 5,000-point subsample (what a page switch shows).
            bench_projection(run_dir, run_dir / "cache", 5000, ["tsne"])
        bench_slider(run_dir)
        if not args.skip_pages:
            bench_pages(runs, args.points or n, run_id=run_dir.name)
        if args.browser:
            bench_browser(runs)
    finally:
        if args.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
