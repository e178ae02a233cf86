"""LNSCC's options for what the paper's text leaves open: graph scale, weighted pair sampling,
bounded repulsion (tested with the loss), two-stage training; and the published configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clustering.bench.lnscc_ceiling import CONFIGS, config_params
from clustering.methods import get_method, resolve_params
from clustering.methods.lnscc_graph import SETS, PairSampler, graph_temperature, knn, knn_pair_sets, local_weights
from clustering.methods.registry import Batch
from tests.test_methods import blobs, setup


def test_graph_tau_zero_is_the_paper_and_positive_tau_is_scale_free() -> None:
    x = blobs(n=90, d=6).inputs.numpy()
    idx, dist = knn(x, 10)
    assert graph_temperature(dist, 0.0) == 1.0
    gap = float(np.mean(dist[:, -1] - dist[:, 0]))
    assert graph_temperature(dist, 0.4) == pytest.approx(0.4 * gap)
    np.testing.assert_allclose(local_weights(dist, 2.0), local_weights(dist / 2.0))  # softmax(-D / T)
    # The same data in other units (pixels in [0, 255] instead of [0, 1]): the paper's graph
    # changes, the scaled one does not.
    idx2, dist2 = knn(255.0 * x, 10)
    paper, paper_255 = knn_pair_sets(idx, dist), knn_pair_sets(idx2, dist2)
    scaled, scaled_255 = knn_pair_sets(idx, dist, tau=0.4), knn_pair_sets(idx2, dist2, tau=0.4)
    assert paper.sizes() != paper_255.sizes()
    assert scaled.sizes() == scaled_255.sizes()
    np.testing.assert_allclose(scaled.a, scaled_255.a, rtol=1e-4)  # float32 inputs
    with pytest.raises(ValueError, match="tau must be >= 0"):
        graph_temperature(dist, -1.0)


def test_weighted_sampling_attracts_edges_in_proportion_to_a_and_repels_non_edges() -> None:
    x = blobs(n=60, d=4).inputs.numpy()
    idx, dist = knn(x, 5)
    sets = knn_pair_sets(idx, dist)
    neighbors = torch.from_numpy(idx)
    sampler = PairSampler(sets, neighbors, sampling="weighted", negatives=4)
    pairs, which = sampler.draw(60_000, torch.Generator().manual_seed(0))
    kinds = [SETS[k] for k in which.tolist()]
    assert set(kinds) == {"im_pos", "dis"}  # no E^{im-}, no E^{ba}
    assert kinds.count("im_pos") / len(kinds) == pytest.approx(1 / 5, abs=0.01)
    # attracting pairs: edge e drawn with probability A_e / sum(A)
    attract = pairs[which == SETS.index("im_pos")]
    edge_of = {tuple(e): i for i, e in enumerate(sets.edges.tolist())}
    counts = np.bincount([edge_of[tuple(p)] for p in attract.tolist()], minlength=len(sets.a))
    expected = sets.a / sets.a.sum() * counts.sum()
    top = np.argsort(-expected)[:10]
    np.testing.assert_allclose(counts[top], expected[top], rtol=0.25)
    repel = pairs[which == SETS.index("dis")]
    linked = set(edge_of)
    assert all((min(i, j), max(i, j)) not in linked for i, j in repel.tolist())
    with pytest.raises(ValueError, match="valid: sets, weighted"):
        PairSampler(sets, neighbors, sampling="balanced")


@pytest.mark.parametrize(
    "params,message",
    [({"graph_tau": -0.1}, "graph_tau"), ({"pair_sampling": "x"}, "valid: sets, weighted"),
     ({"repulsion": "x"}, "valid: log, bounded"), ({"two_stage": 1.0}, "two_stage"), ({"negatives": 0}, "negatives")],
)  # fmt: skip
def test_bad_option_values_name_the_choices(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_params(get_method("lnscc"), params)


def test_two_stage_trains_pairs_only_then_fits_the_head_to_kmeans() -> None:
    data = blobs(n=90, d=6, k=3)
    method, config, views = setup("lnscc", data, two_stage=0.5, head_fit_steps=200)
    idx = torch.arange(16)

    def step(progress: float) -> dict:
        batch = Batch(inputs=data.inputs[idx], indices=idx, views=views, dataset_inputs=data.inputs, progress=progress)
        out = method.training_step(batch)
        out.loss.backward()
        return out.parts

    assert float(step(0.2)["eta"]) == 0.0 and int(method.head_step) == -1  # stage 1: pair losses only
    parts = step(0.5)  # the switch: the head is fitted before this step
    assert int(method.head_step) == 1 and float(parts["eta"]) == pytest.approx(0.05)  # ramp from the switch
    assert float(step(0.6)["eta"]) == pytest.approx(0.10)
    state = method.state_dict()
    fresh, _, _ = setup("lnscc", data, two_stage=0.5)
    fresh.load_state_dict(state)
    assert int(fresh.head_step) == 1  # a resumed run does not fit the head again


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "inside-bf16-autocast"])
def test_the_fitted_head_reproduces_kmeans_on_z(autocast: bool) -> None:
    """Also when called from a training step under bf16 autocast (--amp auto on a CPU with bf16):
    the fit runs in full precision (in bf16 it collapsed MNIST runs to one cluster)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    data = blobs(n=200, d=6, k=10)
    method, _, _ = setup("lnscc", data, two_stage=0.5, head_fit_steps=300)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        method.fit_head_to_kmeans(data.inputs, torch.device("cpu"))
    z = method._z_of(data.inputs, torch.device("cpu"))
    kmeans = KMeans(10, n_init=3, random_state=0).fit_predict(z.numpy())
    method.model.eval()
    with torch.no_grad():
        head = method.model(data.inputs).probs.argmax(1).numpy()
    assert adjusted_rand_score(kmeans, head) > 0.95


def test_the_published_configuration_pins_every_option_to_the_paper() -> None:
    published = resolve_params(get_method("lnscc"), config_params("published"))
    assert (published.graph_tau, published.pair_sampling, published.repulsion, published.two_stage,
            published.im_neg_scale) == (0.0, "sets", "log", 0.0, 1.0)  # fmt: skip
    assert config_params("tau") == {**CONFIGS["published"], "graph_tau": 0.4}  # one piece on top of the paper
    assert config_params("default") == {}
    with pytest.raises(ValueError, match="valid: published"):
        config_params("nope")


def test_the_shipped_published_config_file_is_the_published_configuration() -> None:
    import json
    from pathlib import Path

    from clustering.config import TrainConfig

    path = Path(__file__).resolve().parents[1] / "assets" / "configs" / "lnscc-as-published.json"
    config = TrainConfig.load(path)
    assert config.method == "lnscc" and config.method_params == CONFIGS["published"]
    assert json.loads(path.read_text())["method_params"] == config_params("published")


def test_lnscc_on_a_saved_pixel_matrix_is_the_same_problem_as_on_the_images(tmp_path) -> None:  # noqa: ANN001
    """--dataset vectors on an .npz of the images' pixels (flattened, in [0, 1]): the same graph,
    the same pair sets and the same network; only the input normalisation differs (images are
    standardised per channel inside the model, vectors enter as given), so the losses differ a
    little and both are finite."""
    from types import SimpleNamespace

    from clustering.config import TrainConfig
    from clustering.data import load_dataset
    from clustering.setup import build_method, prepare_data, resolve_config

    images = load_dataset("digits")
    images.inputs, images.labels = images.inputs[:300], images.labels[:300]
    np.savez(tmp_path / "pixels.npz", x=images.inputs.reshape(300, -1).float().numpy() / 255.0, y=images.labels)
    vectors = load_dataset("vectors", str(tmp_path / "pixels.npz"))
    methods, losses = {}, {}
    for name, data in (("images", images), ("vectors", vectors)):
        config = resolve_config(TrainConfig(method="lnscc", dataset=data.name, batch_size=50, amp="off",
                                            image_size=8 if name == "images" else None,  # native size
                                            method_params={"graph_tau": 0.4}), data, "cpu")  # fmt: skip
        prepared = prepare_data(config, data)
        torch.manual_seed(0)
        method = build_method(config, prepared, torch.device("cpu"))
        idx = torch.arange(50)
        views = SimpleNamespace(generator=torch.Generator().manual_seed(1))  # the pair draws' stream
        batch = Batch(inputs=prepared.inputs[idx], indices=idx, views=views, dataset_inputs=prepared.inputs)
        losses[name] = float(method.training_step(batch).loss.detach())
        methods[name] = method
    assert torch.equal(methods["images"].knn_index, methods["vectors"].knn_index)
    assert methods["images"].pairs().sizes() == methods["vectors"].pairs().sizes()
    assert np.isfinite(list(losses.values())).all()
    a, b = dict(methods["images"].named_parameters()), dict(methods["vectors"].named_parameters())
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
