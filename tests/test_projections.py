"""Projections: both t-SNE back ends keep blobs apart; a run writes its own maps when it ends, the
studio uses them only for the evaluation and parameters they were computed at."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.logic import projection  # noqa: E402
from app.logic.synthetic import fabricate_run  # noqa: E402
from clustering import projections  # noqa: E402
from clustering.runs import read_predictions, read_status  # noqa: E402


def blobs(n_per: int = 60, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, dim)) * 6
    labels = np.repeat(np.arange(3), n_per)
    return centers[labels] + rng.normal(size=(3 * n_per, dim)), labels


def neighbour_purity(coords: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    return float(np.mean(labels[nearest] == labels[:, None]))


@pytest.mark.parametrize("backend", ["opentsne", "sklearn"])
def test_tsne_back_ends_keep_blobs_apart(backend: str) -> None:
    if backend == "opentsne":
        pytest.importorskip("openTSNE")
    x, labels = blobs()
    coords = projections.compute(x, "tsne", perplexity=20, backend=backend)
    assert coords.shape == (180, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert neighbour_purity(coords, labels) > 0.95


class FakeCumlEstimator:
    """Stands in for cuml.manifold.TSNE / UMAP: records its arguments, returns a fixed layout."""

    calls: list[tuple[str, dict]] = []

    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        FakeCumlEstimator.calls.append((type(self).__name__, self.kwargs))
        return np.arange(2 * len(x), dtype=np.float64).reshape(len(x), 2)


def test_a_gpu_machine_with_cuml_projects_with_cuml(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import torch

    manifold = types.ModuleType("cuml.manifold")
    manifold.TSNE = type("TSNE", (FakeCumlEstimator,), {})
    manifold.UMAP = type("UMAP", (FakeCumlEstimator,), {})
    cuml = types.ModuleType("cuml")
    cuml.manifold = manifold
    monkeypatch.setitem(sys.modules, "cuml", cuml)
    monkeypatch.setitem(sys.modules, "cuml.manifold", manifold)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert projections.tsne_backend() in ("opentsne", "sklearn") and projections.umap_backend() == "umap-learn"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert projections.tsne_backend() == "cuml" and projections.umap_backend() == "cuml"
    FakeCumlEstimator.calls.clear()
    x, _ = blobs(n_per=10)
    for method in ("tsne", "umap"):
        coords = projections.compute(x, method, perplexity=5, n_neighbors=8, seed=3)
        assert coords.shape == (30, 2) and coords.dtype == np.float32
    (tsne, tsne_args), (umap, umap_args) = FakeCumlEstimator.calls
    assert tsne == "TSNE" and tsne_args["perplexity"] == 5 and tsne_args["method"] == "fft"
    assert umap == "UMAP" and umap_args["n_neighbors"] == 8 and umap_args["random_state"] == 3
    assert tsne_args["output_type"] == umap_args["output_type"] == "numpy"


def test_unknown_method_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid: tsne, umap"):
        projections.compute(np.zeros((5, 2)), "pca")


def test_a_run_map_is_used_only_at_its_step_and_with_the_run_parameters(tmp_path: Path) -> None:
    run = fabricate_run(tmp_path / "r", n=50, own_maps=("tsne",))
    step = int(read_predictions(run)["step"])
    default = projection.ProjectionParams(method="tsne", source="z", subsample=None)
    positions, coords = projection.run_projection(run, step, default, 50)
    assert positions.tolist() == list(range(50)) and coords.shape == (50, 2)
    assert projection.run_projection(run, step + 1, default, 50) is None  # a later evaluation: stale
    assert projection.run_projection(run, None, default, 50) is None  # predictions from before steps were kept
    other = projection.ProjectionParams(method="tsne", source="z", subsample=None, perplexity=10.0)
    assert projection.run_projection(run, step, other, 50) is None
    umap = projection.ProjectionParams(method="umap", source="z", subsample=None)
    assert projection.run_projection(run, step, umap, 50) is None  # not written
    (run / "projections" / "tsne-z.npz").write_bytes(b"PK\x03\x04 torn")
    assert projection.run_projection(run, step, default, 50) is None


def test_a_finished_run_writes_its_maps_and_says_so(tmp_path: Path) -> None:
    pytest.importorskip("openTSNE")  # keeps the test fast (seconds); sklearn's path is tested above
    from clustering.config import TrainConfig
    from clustering.data import load_dataset
    from clustering.train import train

    config = TrainConfig(method="uccc", dataset="digits", image_size=12, batch_size=256, max_steps=3,
                         out=str(tmp_path), run_id="r", threads=1, projections="tsne")  # fmt: skip
    result = train(config, progress=False, data=load_dataset("digits", image_size=12))
    pred = read_predictions(result.run_dir)
    assert int(pred["step"]) == 3
    coords = projections.read_run_projection(result.run_dir, "tsne", "z", 3)
    assert coords is not None and coords.shape == (1797, 2) and np.isfinite(coords).all()
    # the map is of z: digits' classes stay together in it
    assert neighbour_purity(coords[::6], pred["label"][::6]) > 0.3
    assert read_status(result.run_dir)["projections"] == "done"
    assert not (result.run_dir / "projections" / "umap-z.npz").exists()


def test_the_library_benchmark_times_each_library(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openTSNE")
    from app.bench import main

    assert main(["--libraries", "150", "--which", "opentsne,sklearn"]) == 0
    out = capsys.readouterr().out
    assert "opentsne      150 points" in out and "sklearn       150 points" in out
    assert "x faster than sklearn" in out
