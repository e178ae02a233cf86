"""Every registered method takes a training step; CC, SACC, GCC and LNSCC do what their papers say."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clustering import views as views_module
from clustering.config import TrainConfig
from clustering.data import DataSet, load_dataset
from clustering.errors import ConfigError, UserError
from clustering.evaluation import embed
from clustering.losses import cc_cluster_loss
from clustering.methods import Batch, EpochContext, get_method, method_names
from clustering.methods import sacc as sacc_module
from clustering.methods import uccc as uccc_module
from clustering.methods.gcc import batch_weights, symmetric_degree
from clustering.methods.lnscc_graph import adjacency, draw_edges, draw_non_edges, knn, local_weights, pair_sets
from clustering.methods.registry import StepOutput
from clustering.neighbors import knn_indices
from clustering.setup import build_method, resolve_config
from clustering.views import ViewMaker

DEVICE = torch.device("cpu")


@pytest.fixture(scope="module")
def digits() -> DataSet:
    full = load_dataset("digits", image_size=16)
    return DataSet(inputs=full.inputs[:64].clone(), labels=full.labels[:64], class_names=full.class_names,
                   name="digits", num_classes=10)  # fmt: skip


def blobs(n: int = 60, d: int = 8, k: int = 3, seed: int = 0) -> DataSet:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % k
    centres = torch.randn(k, d, generator=g) * 6
    x = centres[labels] + torch.randn(n, d, generator=g)
    return DataSet(inputs=x.float(), labels=labels.numpy(), class_names=[str(i) for i in range(k)], name="vectors",
                   kind="vector", num_classes=k)  # fmt: skip


def setup(method: str, data: DataSet, **params: object):  # noqa: ANN201
    torch.manual_seed(0)
    config = resolve_config(TrainConfig(method=method, dataset=data.name, batch_size=16, method_params=params), data)
    m = build_method(config, data, DEVICE)
    return m, config, ViewMaker(config, data, DEVICE)


def one_step(method, config, views, data: DataSet, n: int = 16):  # noqa: ANN001, ANN201
    hook = getattr(method, "on_epoch_start", None)
    if hook is not None:
        hook(EpochContext(epoch=0, device=DEVICE, num_samples=len(data),
                          embed=lambda: embed(method.model, data.inputs, DEVICE)))  # fmt: skip
    idx = torch.arange(n)
    return method.training_step(Batch(inputs=data.inputs[idx], indices=idx, views=views, dataset_inputs=data.inputs))


# ----------------------------------------------------------------------------- every method


@pytest.mark.parametrize("name", method_names())
def test_one_training_step_every_method(name: str, digits: DataSet) -> None:
    data = blobs() if name == "lnscc" else digits
    method, config, views = setup(name, data)
    out = one_step(method, config, views, data)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.parts and all(v.dim() == 0 and torch.isfinite(v) for v in out.parts.values())
    method.zero_grad(set_to_none=True)
    out.loss.backward()
    for pname, param in method.named_parameters():
        assert param.grad is not None, f"{name}: {pname} got no gradient"
        assert param.grad.abs().sum() > 0, f"{name}: {pname} got a zero gradient"
    with torch.no_grad():
        x = data.inputs[:5]
        res = method.model(x.float() / 255 if x.dtype == torch.uint8 else x)
    assert res.probs.shape == (5, config.num_clusters)
    assert res.z.shape == (5, config.instance_dim)
    torch.testing.assert_close(res.probs.sum(dim=1), torch.ones(5))


def test_lnscc_accepts_images(digits: DataSet) -> None:
    method, config, views = setup("lnscc", digits)
    assert config.backbone == "mlp" and config.instance_dim == 64
    out = one_step(method, config, views, digits)
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("name", ["cc", "sacc", "gcc"])
def test_image_methods_refuse_vectors_atbuild_method(name: str) -> None:
    with pytest.raises(ConfigError, match="vector"):
        setup(name, blobs())


@pytest.mark.parametrize("name", ["uccc", "cc", "sacc", "gcc"])
def test_image_methods_refuse_vectors_in_training(name: str, tmp_path) -> None:  # noqa: ANN001
    from clustering.train import train

    config = TrainConfig(method=name, dataset="vectors", max_steps=1, out=str(tmp_path), threads=1)
    with pytest.raises(UserError, match="vector"):
        train(config, data=blobs(k=10), progress=False)


def test_paper_training_defaults() -> None:
    from clustering.methods import get_method

    assert get_method("cc").train_defaults.batch_size == 256
    assert get_method("sacc").train_defaults.batch_size == 200
    assert get_method("uccc").train_defaults.method_batch(20) == 512  # the papers' 256 * C / 10
    lnscc = get_method("lnscc").train_defaults
    assert (lnscc.optimizer, lnscc.lr, lnscc.weight_decay, lnscc.batch_size) == ("sgd", 0.01, 5e-4, 200)
    gcc = get_method("gcc").train_defaults
    assert (gcc.optimizer, gcc.lr, gcc.scheduler, gcc.weight_decay) == ("sgd", 0.4, "cosine", 1e-4)
    on_cnn = gcc.on("cnn")
    assert (on_cnn.optimizer, on_cnn.lr, on_cnn.params) == ("adam", 1e-3, {"rgc_temperature": 0.5})
    # An optimiser the user picked that is not the backbone's keeps the general lr, not the cnn's.
    assert gcc.on("cnn", optimizer="sgd").lr == 0.4 and gcc.on("cnn", "sgd").params == {"rgc_temperature": 0.5}


def test_training_defaults_refuse_unknown_backbone_fields() -> None:
    from clustering.methods.defaults import TrainDefaults

    with pytest.raises(TypeError, match="unknown training defaults"):
        TrainDefaults(by_backbone={"cnn": {"learning_rate": 1e-3}})


def _resolved(method: str, data: DataSet, **fields: object) -> TrainConfig:
    return resolve_config(TrainConfig(method=method, dataset=data.name, **fields), data)  # type: ignore[arg-type]


def test_backbone_defaults_the_paper_on_resnets_and_the_measured_ones_on_the_small_cnn(digits: DataSet) -> None:
    cnn = _resolved("gcc", digits)
    assert (cnn.backbone, cnn.optimizer, cnn.lr, cnn.weight_decay, cnn.scheduler) == ("cnn", "adam", 1e-3, 0.0, "none")
    assert cnn.method_params["rgc_temperature"] == 0.5
    resnet = _resolved("gcc", digits, backbone="resnet18")
    assert (resnet.optimizer, resnet.lr, resnet.weight_decay, resnet.scheduler) == ("sgd", 0.4, 1e-4, "cosine")
    assert resnet.method_params["rgc_temperature"] == 0.1
    # The user's choices win: a parameter, and an optimiser the backbone's settings were not tuned for.
    assert _resolved("gcc", digits, method_params={"rgc_temperature": 0.2}).method_params["rgc_temperature"] == 0.2
    sgd = _resolved("gcc", digits, optimizer="sgd")
    assert (sgd.optimizer, sgd.lr, sgd.scheduler) == ("sgd", 0.4, "cosine")
    assert sgd.method_params["rgc_temperature"] == 0.5
    from clustering.methods import backbone_overrides, get_method

    shown = backbone_overrides(get_method("gcc"))  # what `methods` and the launch form list
    assert shown == {"cnn": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "scheduler": "none",
                             "rgc_temperature": 0.5}}  # fmt: skip
    for name in ("uccc", "cc", "sacc"):  # the Adam methods: 1e-3 on the small CNN, the papers' 3e-4 on ResNets
        assert _resolved(name, digits).lr == 1e-3
        assert _resolved(name, digits, backbone="resnet18").lr == 3e-4
    # UCCC's rate settles over the run's last 20% on the CNN; the papers' constant rate on ResNets,
    # for CC and SACC, and wherever the user names a schedule.
    assert _resolved("uccc", digits).scheduler == "cosine-tail"
    assert _resolved("uccc", digits, backbone="resnet18").scheduler == "none"
    assert _resolved("uccc", digits, scheduler="none").scheduler == "none"
    assert _resolved("cc", digits).scheduler == _resolved("sacc", digits).scheduler == "none"


# ----------------------------------------------------------------------------- CC


def test_cc_entropy_switch(digits: DataSet) -> None:
    with_h, config, views = setup("cc", digits)
    without, _, _ = setup("cc", digits, entropy="false")
    assert with_h.params.entropy and not without.params.entropy
    a = one_step(with_h, config, ViewMaker(config, digits, DEVICE), digits)
    b = one_step(without, config, ViewMaker(config, digits, DEVICE), digits)
    # Same weights and views: the only difference is the balance term of both views.
    assert float((a.loss - b.loss).detach()) == pytest.approx(float(a.parts["balance"]), abs=1e-4)
    assert float(a.parts["balance"]) > 0


# ----------------------------------------------------------------------------- SACC


def test_sacc_combines_the_right_view_pairs(digits: DataSet, monkeypatch: pytest.MonkeyPatch) -> None:
    method, config, views = setup("sacc", digits)
    n = 16
    ins_pairs, clu_pairs = [], []

    def view_of(t: torch.Tensor) -> int:  # slices of the (3n, d) output: which third?
        return t.storage_offset() // (n * t.shape[1])

    real_ins, real_clu = sacc_module.nt_xent, sacc_module.cc_cluster_loss
    monkeypatch.setattr(sacc_module, "nt_xent", lambda a, b, t: ins_pairs.append((view_of(a), view_of(b)))
                        or real_ins(a, b, t))  # fmt: skip
    monkeypatch.setattr(sacc_module, "cc_cluster_loss", lambda a, b, t, entropy: clu_pairs.append(
        (view_of(a), view_of(b), entropy)) or real_clu(a, b, t, entropy))  # fmt: skip
    seen = {}
    monkeypatch.setattr(views_module, "rand_augment", lambda x, n, m, generator: seen.update(n=n, m=m)
                        or torch.zeros_like(x))  # fmt: skip
    inputs = []
    forward = method.model.forward
    monkeypatch.setattr(method.model, "forward", lambda x: inputs.append(x) or forward(x))
    out = one_step(method, config, views, digits, n)
    assert ins_pairs == [(0, 1), (1, 2)]  # ins(w1, w2) + ins(w2, s)
    assert clu_pairs == [(0, 1, True), (0, 2, True), (1, 2, True)]  # all three pairs, with entropy
    assert seen == {"n": 5, "m": 10}
    x = inputs[0]
    assert x.shape[0] == 3 * n and x[2 * n :].abs().sum() == 0 and x[: 2 * n].abs().sum() > 0  # third = strong
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("strong", [False, True])
def test_uccc_strong_view_adds_sacc_pairs_over_one_graph(strong: bool, digits: DataSet,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    method, config, views = setup("uccc", digits, strong_view=strong, neighbor_view=False)  # one forward
    n = 16
    ins_calls, clu_rows, graph_rows = [], [], []
    real_ins, real_clu = uccc_module.nt_xent, uccc_module.uccc_cluster_loss
    real_graph = uccc_module.community_assignments
    monkeypatch.setattr(uccc_module, "nt_xent", lambda a, b, t: ins_calls.append(a.shape[0]) or real_ins(a, b, t))
    monkeypatch.setattr(uccc_module, "uccc_cluster_loss", lambda yp, yn, **kw: clu_rows.append(yp.shape[0])
                        or real_clu(yp, yn, **kw))  # fmt: skip
    monkeypatch.setattr(uccc_module, "community_assignments", lambda z, y, *a, **kw: graph_rows.append(z.shape[0])
                        or real_graph(z, y, *a, **kw))  # fmt: skip
    monkeypatch.setattr(views_module, "rand_augment", lambda x, n, m, generator: torch.zeros_like(x))
    inputs = []
    forward = method.model.forward
    monkeypatch.setattr(method.model, "forward", lambda x: inputs.append(x) or forward(x))
    out = one_step(method, config, views, digits, n)
    views_count = 3 if strong else 2
    assert inputs[0].shape[0] == views_count * n
    assert graph_rows == [views_count * n]  # one community graph over every view
    assert ins_calls == [n] * (views_count - 1)  # ins(w1, w2) (+ ins(w2, s))
    assert clu_rows == [2 * n] * (3 if strong else 1)  # Eq. 6 on each view pair
    if strong:
        assert inputs[0][2 * n :].abs().sum() == 0  # the third view is the (patched) strong one
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters() if p.requires_grad)


def paired_z(n: int) -> torch.Tensor:
    """(n, 16) embeddings in which samples 2j and 2j + 1 share a direction: each is the other's
    one nearest neighbour (``partner = arange(n) ^ 1``)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(n // 2, 16, generator=g).repeat_interleave(2, dim=0) + 0.01 * torch.randn(n, 16, generator=g)


def self_or_partner(views: torch.Tensor, images: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of ``views`` (a view source per batch image ``idx``) are the image itself, and which its
    :func:`paired_z` partner."""
    partner = idx ^ 1
    return (views == images[idx]).flatten(1).all(1), (views == images[partner]).flatten(1).all(1)


@pytest.mark.parametrize("strong", [True, False])
def test_uccc_neighbor_view_draws_the_last_view_from_a_neighbour(strong: bool, digits: DataSet,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    method, config, views = setup("uccc", digits, strong_view=strong, neighbor_view=True, neighbors=1,
                                  neighbor_from=0.0)
    n = len(digits)
    z = paired_z(n)
    method.on_epoch_start(_ctx(0, z.numpy()))
    partner = torch.arange(n) ^ 1
    assert torch.equal(method.neighbor_table[:, 0], partner)
    sources = []
    name = "strong" if strong else "weak"
    real = getattr(views, name)
    monkeypatch.setattr(views, name, lambda x, **kw: sources.append(x) or real(x, **kw))
    idx = torch.arange(32)
    out = method.training_step(Batch(inputs=digits.inputs[idx], indices=idx, views=views, dataset_inputs=digits.inputs))
    last = sources[-1]  # the strong view's source, or the second weak view's
    if not strong:
        assert torch.equal(sources[0], digits.inputs[idx])  # the first weak view is of the image itself
    is_self, is_partner = self_or_partner(last, digits.inputs, idx)
    assert (is_self | is_partner).all() and is_partner.any() and is_self.any()  # a neighbour, or itself
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters() if p.requires_grad)


def test_uccc_neighbor_weak_takes_both_later_views_from_one_neighbour(
    digits: DataSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    method, config, views = setup("uccc", digits, neighbor_weak=True, neighbors=1, neighbor_from=0.0)
    n = len(digits)
    z = paired_z(n)
    method.on_epoch_start(_ctx(0, z.numpy()))
    weak_sources, strong_sources = [], []
    real_weak, real_strong = views.weak, views.strong
    monkeypatch.setattr(views, "weak", lambda x, **kw: weak_sources.append(x) or real_weak(x, **kw))
    monkeypatch.setattr(views, "strong", lambda x, **kw: strong_sources.append(x) or real_strong(x, **kw))
    idx = torch.arange(32)
    out = method.training_step(Batch(inputs=digits.inputs[idx], indices=idx, views=views, dataset_inputs=digits.inputs))
    first, second = weak_sources[:2]  # (the strong view applies a weak one first)
    assert torch.equal(first, digits.inputs[idx])  # w1: the image itself
    assert torch.equal(second, strong_sources[0])  # w2 and s: one and the same draw
    is_self, is_partner = self_or_partner(second, digits.inputs, idx)
    assert (is_self | is_partner).all() and is_partner.any()
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters() if p.requires_grad)


def test_uccc_neighbor_from_keeps_the_plain_views_until_its_share_of_the_run(
    digits: DataSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    method, config, views = setup("uccc", digits, neighbor_view=True, neighbors=1, neighbor_from=0.5)
    n = len(digits)
    z = paired_z(n)

    def no_embedding() -> None:
        raise AssertionError("the neighbour table was rebuilt before neighbor_from")

    method.on_epoch_start(EpochContext(epoch=0, embed=no_embedding, device=DEVICE, num_samples=n))
    sources = []
    real = views.strong
    monkeypatch.setattr(views, "strong", lambda x, **kw: sources.append(x) or real(x, **kw))
    idx = torch.arange(32)

    def step(progress: float) -> torch.Tensor:
        batch = Batch(inputs=digits.inputs[idx], indices=idx, views=views, dataset_inputs=digits.inputs,
                      progress=progress)  # fmt: skip
        method.training_step(batch)
        return sources[-1]

    assert torch.equal(step(0.49), digits.inputs[idx]) and not bool(method.neighbors_ready)  # plain views
    method.update_neighbors(z)  # what the first step past 0.5 would build from the model's own z
    partner = torch.arange(n) ^ 1
    last = step(0.5)
    _, is_partner = self_or_partner(last, digits.inputs, idx)
    assert is_partner.any()  # from 0.5 on the strong view is of a neighbour (or of the image itself)
    method.on_epoch_start(_ctx(1, z.numpy()))  # and the epoch's start now rebuilds the table
    assert torch.equal(method.neighbor_table[:, 0], partner)
    with pytest.raises(ValueError, match="neighbor_from"):
        setup("uccc", digits, neighbor_view=True, neighbor_from=1.0)


def test_uccc_instance_loss_runs_at_the_temperature_chosen_from_the_clusters(
    digits: DataSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resolve_config(TrainConfig(method="uccc", dataset="digits", batch_size=16, num_clusters=200), digits)
    assert config.method_params["instance_temperature"] == 0.224  # 0.5 sqrt(40 / 200)
    method = build_method(config, digits, DEVICE)
    unset = uccc_module.UCCC(method.model, uccc_module.UCCCParams(), len(digits))  # built without the rule
    assert method.instance_temperature == unset.instance_temperature == 0.224
    taus = []
    real = uccc_module.nt_xent
    monkeypatch.setattr(uccc_module, "nt_xent", lambda a, b, tau: taus.append(tau) or real(a, b, tau))
    idx = torch.arange(16)
    views = ViewMaker(config, digits, DEVICE)
    method.training_step(Batch(inputs=digits.inputs[idx], indices=idx, views=views, dataset_inputs=digits.inputs))
    assert taus == [0.224]  # ins(w1, w2); at 200 clusters there is no strong view (ins(w2, s))
    explicit = resolve_config(TrainConfig(method="uccc", dataset="digits", num_clusters=200,
                                          method_params={"instance_temperature": 0.5}), digits)  # fmt: skip
    assert build_method(explicit, digits, DEVICE).instance_temperature == 0.5


def test_uccc_strong_view_is_chosen_from_the_clusters(digits: DataSet, monkeypatch: pytest.MonkeyPatch) -> None:
    config = resolve_config(TrainConfig(method="uccc", dataset="digits", batch_size=16, num_clusters=200), digits)
    assert config.method_params["strong_view"] is False  # above 40 clusters: the paper's two weak views
    method = build_method(config, digits, DEVICE)
    unset = uccc_module.UCCC(method.model, uccc_module.UCCCParams(), len(digits))  # built without the rule
    assert method.strong_view is unset.strong_view is False
    views = ViewMaker(config, digits, DEVICE)
    strong_calls = []
    real_strong = views.strong
    monkeypatch.setattr(views, "strong", lambda x, **kw: strong_calls.append(len(x)) or real_strong(x, **kw))
    idx = torch.arange(16)
    out = method.training_step(Batch(inputs=digits.inputs[idx], indices=idx, views=views,
                                     dataset_inputs=digits.inputs))  # fmt: skip
    assert strong_calls == [] and torch.isfinite(out.loss)
    ten = build_method(resolve_config(TrainConfig(method="uccc", dataset="digits", batch_size=16), digits),
                       digits, DEVICE)  # fmt: skip
    ten.training_step(Batch(inputs=digits.inputs[idx], indices=idx, views=views, dataset_inputs=digits.inputs))
    assert ten.strong_view is True and strong_calls == [16]  # 10 clusters: the strong third view


def test_uccc_instance_positives_neighbors_counts_table_neighbours_as_positives(
    digits: DataSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    method, config, views = setup("uccc", digits, neighbors=1, neighbor_from=0.5, instance_positives="neighbors")
    n = len(digits)
    z = paired_z(n)
    masks, plain = [], []
    real_multi, real_plain = uccc_module.multi_positive_nt_xent, uccc_module.nt_xent
    monkeypatch.setattr(uccc_module, "multi_positive_nt_xent", lambda rows, pos, t: masks.append(pos)
                        or real_multi(rows, pos, t))  # fmt: skip
    monkeypatch.setattr(uccc_module, "nt_xent", lambda a, b, t: plain.append(a.shape[0]) or real_plain(a, b, t))
    strong_sources = []
    real_strong = views.strong
    monkeypatch.setattr(views, "strong", lambda x, **kw: strong_sources.append(x) or real_strong(x, **kw))
    idx = torch.arange(32)

    def step(progress: float) -> StepOutput:
        batch = Batch(inputs=digits.inputs[idx], indices=idx, views=views, dataset_inputs=digits.inputs,
                      progress=progress)  # fmt: skip
        return method.training_step(batch)

    step(0.2)  # before neighbor_from: the paper's NT-Xent on both view pairs
    assert plain == [32, 32] and masks == []
    method.update_neighbors(z)  # each image's one neighbour is its partner idx ^ 1
    out = step(0.6)
    assert plain == [32, 32] and len(masks) == 2  # both instance terms now multi-positive
    own = torch.cat([idx, idx])
    same_or_partner = (own[:, None] == own[None, :]) | ((own[:, None] ^ 1) == own[None, :])
    assert torch.equal(masks[0], same_or_partner)  # ins(w1, w2): an image's views and its partner's
    is_self, is_partner = self_or_partner(strong_sources[-1], digits.inputs, idx)
    last_src = torch.where(is_partner & ~is_self, idx ^ 1, idx)
    pair = torch.cat([idx, last_src])
    expected = (pair[:, None] == pair[None, :]) | ((pair[:, None] ^ 1) == pair[None, :])
    assert torch.equal(masks[1], expected)  # ins(w2, s): s's source is the image or its partner
    rows = torch.arange(32)
    assert masks[1][rows, rows + 32].all()  # the pair (w2_i, s_i) is always a positive
    assert int(masks[0].sum(1).min()) == 4  # own two views and the partner's two, diagonal included
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="needs neighbor_view"):
        setup("uccc", digits, neighbor_view=False, instance_positives="neighbors")
    with pytest.raises(ConfigError, match="must be one of views, neighbors"):
        setup("uccc", digits, instance_positives="graph")


def test_uccc_neighbor_table_is_built_without_the_trainer_and_kept_in_checkpoints(digits: DataSet) -> None:
    plain, _, _ = setup("uccc", digits, neighbor_view=False)
    assert not any("neighbor" in key for key in plain.state_dict())  # old checkpoints keep their keys
    method, config, views = setup("uccc", digits, neighbor_view=True, neighbor_from=0.0)
    idx = torch.arange(16)
    method.training_step(Batch(inputs=digits.inputs[idx], indices=idx, views=views, dataset_inputs=digits.inputs))
    assert bool(method.neighbors_ready) and method.neighbor_table.shape == (len(digits), 5)
    assert (method.neighbor_table != torch.arange(len(digits))[:, None]).all()  # never itself in the table
    # A checkpoint evaluated on another split builds the method for another N: the table keeps its shape.
    half = DataSet(inputs=digits.inputs[:32], labels=digits.labels[:32], class_names=digits.class_names,
                   name="digits", num_classes=10)  # fmt: skip
    other, _, _ = setup("uccc", half, neighbor_view=True, neighbor_from=0.0)
    other.load_state_dict(method.state_dict())
    assert torch.equal(other.neighbor_table, method.neighbor_table) and bool(other.neighbors_ready)


@pytest.mark.parametrize("strong", [True, False])
def test_uccc_cc_weight_adds_ccs_cluster_loss_on_each_view_pair(strong: bool, digits: DataSet,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    method, config, views = setup("uccc", digits, cc_weight=0.5, strong_view=strong, neighbor_view=False)
    outputs = []
    forward = method.model.forward
    monkeypatch.setattr(method.model, "forward", lambda x: outputs.append(forward(x)) or outputs[-1])
    out = one_step(method, config, views, digits)
    probs = outputs[-1].probs.chunk(3 if strong else 2)  # [w1; w2 (; s)]
    pairs = [(0, 1), (0, 2), (1, 2)] if strong else [(0, 1)]
    # CC's own loss (its naive-reference tests are in test_losses_cc_sacc_gcc_lnscc.py), balance term included
    expected = sum(cc_cluster_loss(probs[a], probs[b], 1.0, entropy=True) for a, b in pairs)
    parts = {k: float(v.detach()) for k, v in out.parts.items()}
    assert parts["loss_cc"] == pytest.approx(float(expected.detach()), rel=1e-5)
    total = parts["loss_ins"] + parts["loss_clu"] + 0.5 * parts["loss_cc"]
    assert float(out.loss.detach()) == pytest.approx(total, rel=1e-5)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters() if p.requires_grad)
    plain, config, views = setup("uccc", digits, neighbor_view=False)  # the default: Eq. 6 alone
    assert "loss_cc" not in one_step(plain, config, views, digits).parts
    with pytest.raises(ValueError, match="cc_weight"):
        setup("uccc", digits, cc_weight=-1.0)


def test_sacc_cluster_contrast_runs_at_the_temperature_chosen_from_the_clusters(
    digits: DataSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clustering.data_defaults import cluster_contrast_temperature

    config = resolve_config(TrainConfig(method="sacc", dataset="digits", batch_size=16, num_clusters=100), digits)
    chosen = cluster_contrast_temperature(100)
    assert config.method_params["cluster_temperature"] == chosen < 0.3  # 1 / (1 + ln(99 / 9))
    method = build_method(config, digits, DEVICE)
    unset = type(method)(method.model, type(method.params)(), len(digits))  # built without the rule
    assert method.cluster_temperature == unset.cluster_temperature == chosen
    taus = []
    real = sacc_module.cc_cluster_loss
    monkeypatch.setattr(sacc_module, "cc_cluster_loss", lambda a, b, tau, entropy: taus.append(tau)
                        or real(a, b, tau, entropy))  # fmt: skip
    one_step(method, config, ViewMaker(config, digits, DEVICE), digits)
    assert taus == [chosen] * 3  # all three cluster-level view pairs
    explicit = resolve_config(TrainConfig(method="sacc", dataset="digits", num_clusters=100,
                                          method_params={"cluster_temperature": 1.0}), digits)  # fmt: skip
    assert build_method(explicit, digits, DEVICE).cluster_temperature == 1.0
    assert build_method(resolve_config(TrainConfig(method="sacc", dataset="digits"), digits), digits,
                        DEVICE).cluster_temperature == 1.0  # 10 clusters: the paper's  # fmt: skip
    cc = resolve_config(TrainConfig(method="cc", dataset="digits", num_clusters=100), digits)
    assert cc.method_params["cluster_temperature"] == 1.0  # CC keeps its paper's value (README)


@pytest.mark.parametrize(("method", "loss_name"),
                         [("cc", "nt_xent"), ("sacc", "nt_xent"), ("gcc", "graph_contrastive_loss")])  # fmt: skip
def test_instance_contrast_runs_at_the_temperature_chosen_from_the_clusters(
    method: str, loss_name: str, digits: DataSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resolve_config(TrainConfig(method=method, dataset="digits", batch_size=16, num_clusters=200), digits)
    built = build_method(config, digits, DEVICE)
    if method != "gcc":  # CC and SACC built without resolve_config apply the same rule (GCC: its field's)
        unset = type(built)(built.model, type(built.params)(), len(digits))
        assert built.instance_temperature == unset.instance_temperature == 0.224
    module = __import__(f"clustering.methods.{method}", fromlist=[loss_name])
    real, taus = getattr(module, loss_name), []
    monkeypatch.setattr(module, loss_name, lambda a, b, tau, **kw: taus.append(tau) or real(a, b, tau, **kw))
    one_step(built, config, ViewMaker(config, digits, DEVICE), digits)
    assert taus and set(taus) == {0.224}  # 0.5 sqrt(40 / 200): every instance-level pair (SACC: two)


def test_sacc_sigma_weights_the_cluster_losses(digits: DataSet) -> None:
    a, config, _ = setup("sacc", digits, sigma=1.0)
    b, _, _ = setup("sacc", digits, sigma=0.5)
    out_a = one_step(a, config, ViewMaker(config, digits, DEVICE), digits)
    out_b = one_step(b, config, ViewMaker(config, digits, DEVICE), digits)
    a_clu, b_clu = (out_a.loss - out_a.parts["loss_ins"]).detach(), (out_b.loss - out_b.parts["loss_ins"]).detach()
    assert float(a_clu) == pytest.approx(float(out_a.parts["loss_clu"].detach()), rel=1e-5)
    assert float(b_clu) == pytest.approx(0.5 * float(out_b.parts["loss_clu"].detach()), rel=1e-5)


@pytest.mark.parametrize("name", method_names())
def test_values_before_added_name_real_parameters_with_valid_values(name: str) -> None:
    """``Params.VALUE_BEFORE_ADDED`` rebuilds runs saved before a parameter existed
    (``load_run_config``): each key must be a parameter, each value one it accepts, and differ from
    today's default (else the entry is pointless)."""
    params_cls = get_method(name).Params
    before = getattr(params_cls, "VALUE_BEFORE_ADDED", {})
    fields = {f.name: f.default for f in dataclasses.fields(params_cls)}
    for key, value in before.items():
        assert key in fields and fields[key] != value, (name, key)
        params_cls(**{key: value}).validate()


# ----------------------------------------------------------------------------- GCC


def _ctx(epoch: int, z: np.ndarray) -> EpochContext:
    return EpochContext(epoch=epoch, embed=lambda: {"z": z, "probs": None, "h": None}, device=DEVICE,
                        num_samples=len(z))  # fmt: skip


def test_gcc_graph_uses_the_moving_average(digits: DataSet) -> None:
    method, _, _ = setup("gcc", digits, alpha=0.3)
    n, d = method.bank.shape
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    method.on_epoch_start(_ctx(0, z0.numpy()))
    torch.testing.assert_close(method.bank, F.normalize(z0, dim=1))  # the first bank is z itself
    method.on_epoch_start(_ctx(1, z1.numpy()))
    expected = F.normalize(0.7 * F.normalize(z0, dim=1) + 0.3 * F.normalize(z1, dim=1), dim=1)
    torch.testing.assert_close(method.bank, expected)
    torch.testing.assert_close(method.neighbors, knn_indices(expected, 5))


def test_gcc_rebuild_schedule_and_state_dict(digits: DataSet) -> None:
    method, _, _ = setup("gcc", digits, graph_every=2)
    n, d = method.bank.shape
    z0, z1 = torch.randn(n, d), torch.randn(n, d)
    method.on_epoch_start(_ctx(0, z0.numpy()))
    before = method.bank.clone()
    method.on_epoch_start(_ctx(1, z1.numpy()))  # not a rebuild epoch
    torch.testing.assert_close(method.bank, before)
    state = method.state_dict()
    assert {"bank", "neighbors", "degree", "graph_ready"} <= set(state)
    fresh, _, _ = setup("gcc", digits)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.neighbors, method.neighbors)
    assert bool(fresh.graph_ready)


def test_gcc_knn_graph_finds_the_blobs() -> None:
    z = torch.cat([torch.randn(10, 4) * 0.01 + torch.eye(4)[i] for i in range(3)])
    nb = knn_indices(z, 5)
    assert (nb // 10 == torch.arange(30)[:, None] // 10).all()
    assert (nb != torch.arange(30)[:, None]).all()  # never itself
    deg = symmetric_degree(nb)
    assert (deg >= 6).all() and (deg <= 11).all()  # k out-links, some in-links, + the self-loop


def test_gcc_batch_weights_are_symmetric_laplacian_entries() -> None:
    neighbors = torch.tensor([[1], [2], [0], [0]])  # 0->1, 1->2, 2->0, 3->0
    degree = symmetric_degree(neighbors)
    assert degree.tolist() == [4.0, 3.0, 3.0, 2.0]  # neighbours {1,2,3}, {0,2}, {0,1}, {0} + self
    samples = torch.tensor([0, 3, 0, 1])  # views: 0, 3, 0 again, 1
    w = batch_weights(samples, neighbors, degree)
    torch.testing.assert_close(w, w.T)
    assert w[0, 2] == pytest.approx(1 / 4)  # two views of sample 0: self-loop weight 1/d_0
    assert w[0, 1] == pytest.approx(1 / math.sqrt(8))  # 3 -> 0 links them both ways
    assert w[1, 3] == 0 and torch.diagonal(w).abs().sum() == 0  # 3 and 1 are not linked


def test_gcc_random_neighbours_come_from_the_graph(digits: DataSet) -> None:
    method, _, _ = setup("gcc", digits)
    method.on_epoch_start(_ctx(0, torch.randn(*method.bank.shape).numpy()))
    idx = torch.arange(64).repeat(20)
    nbr = method.random_neighbors(idx, torch.Generator().manual_seed(0))
    allowed = torch.cat([method.neighbors, torch.arange(64)[:, None]], dim=1)[idx]
    assert (allowed == nbr[:, None]).any(dim=1).all()
    assert (nbr == idx).any() and (nbr != idx).any()


@pytest.mark.parametrize(("instance_views", "blocks"), [(True, 3), (False, 2)])
def test_gcc_step_forwards_two_views_of_each_image_plus_a_neighbour(instance_views: bool, blocks: int,
                                                                   digits: DataSet) -> None:  # fmt: skip
    method, config, views = setup("gcc", digits, instance_views=instance_views)
    rows: list[int] = []
    forward = method.model.forward
    method.model.forward = lambda x: rows.append(x.shape[0]) or forward(x)  # type: ignore[method-assign]
    out = one_step(method, config, views, digits)
    assert rows[-1] == blocks * 16 and torch.isfinite(out.loss)


def test_gcc_checkpoint_loads_for_another_split(digits: DataSet) -> None:
    method, _, _ = setup("gcc", digits)
    smaller = DataSet(inputs=digits.inputs[:40], labels=digits.labels[:40], class_names=digits.class_names,
                      name="digits", num_classes=10)  # fmt: skip
    other, _, _ = setup("gcc", smaller)
    other.load_state_dict(method.state_dict())  # bank shapes adopt the checkpoint's
    torch.testing.assert_close(other.model.cluster_head[0].weight, method.model.cluster_head[0].weight)


# ----------------------------------------------------------------------------- LNSCC


def test_lnscc_hand_made_graph_and_counts() -> None:
    """Three samples, M = 2: worked out by hand in the comments."""
    idx = np.array([[1, 2], [0, 2], [1, 0]])
    dist = np.array([[1.0, 2.0], [1.0, 1.0], [1.0, 2.0]])
    w = local_weights(dist)
    s = 1 / (1 + math.exp(-1))  # softmax(-[1, 2]) = [s, 1 - s], s = 0.7311
    np.testing.assert_allclose(w, [[s, 1 - s], [0.5, 0.5], [s, 1 - s]])
    a = adjacency(idx, w).toarray()
    np.testing.assert_allclose(a, a.T)
    a01 = s + 0.5 - 0.5 * s  # W01 + W10 - W01 W10 = 0.8655
    a02 = 2 * (1 - s) - (1 - s) ** 2  # 0.4655
    np.testing.assert_allclose(a, [[0, a01, a02], [a01, 0, a01], [a02, a01, 0]], atol=1e-12)
    sets = pair_sets(adjacency(idx, w), alpha=2.0, beta=5.0)
    assert sets.edges.tolist() == [[0, 1], [0, 2], [1, 2]]
    # Eq. 6: Q+ = floor(2 * 0.8655 / (1 - A)) -> 12.87, 3.24, 12.87; Q- = floor((1 - 0.4655) / A)
    # -> 0.62, 1.15, 0.62. Eq. 11: floor(A / mean) with mean 0.7322 -> 1.18, 0.64, 1.18.
    assert sets.im_pos.tolist() == [12, 3, 12]
    assert sets.im_neg.tolist() == [0, 1, 0]
    assert sets.ba.tolist() == [1, 0, 1]
    assert sets.sizes() == {"im_pos": 27, "im_neg": 1, "ba": 2, "dis": 135}  # Eq. 16: 5 * 27


def test_lnscc_graph_is_sparse_symmetric_and_local() -> None:
    data = blobs(n=300, d=5, k=3, seed=1)
    x = data.inputs.numpy()
    idx, dist = knn(x, 10)
    assert idx.shape == (300, 10) and not (idx == np.arange(300)[:, None]).any()
    assert (np.diff(dist, axis=1) >= 0).all()
    a = adjacency(idx, local_weights(dist))
    assert a.nnz <= 2 * 300 * 10  # sparse, never N x N
    assert abs(a - a.T).max() < 1e-12
    assert a.data.min() > 0 and a.data.max() <= 1.0
    rows, cols = a.nonzero()
    assert (data.labels[rows] == data.labels[cols]).mean() > 0.99  # well separated blobs


def test_lnscc_pair_sampling_follows_counts_and_disconnection() -> None:
    counts = torch.tensor([1, 3, 0, 4])
    draws = draw_edges(counts, 16000, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / 16000
    torch.testing.assert_close(freq, counts.float() / 8, atol=0.02, rtol=0)
    neighbors = torch.tensor([[1], [2], [3], [0], [0]])
    pairs = draw_non_edges(neighbors, 500, torch.Generator().manual_seed(0))
    linked = {(0, 1), (1, 2), (2, 3), (3, 0), (4, 0)}
    assert len(pairs) > 0 and all((i, j) not in linked and (j, i) not in linked and i != j for i, j in pairs.tolist())


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.0])
def test_lnscc_draws_each_pair_set_in_proportion_to_its_scaled_size(scale: float) -> None:
    from clustering.methods.lnscc_graph import SETS

    method, _, _ = setup("lnscc", blobs(), im_neg_scale=scale, pair_sampling="sets")  # the literal sets
    method.build_graph(blobs().inputs)
    sizes = method.pairs().sizes()
    share = {s: sizes[s] * (scale if s == "im_neg" else 1.0) for s in SETS}
    total = sum(share.values())
    _, which = method.draw_pairs(20000, torch.Generator().manual_seed(0))
    freq = torch.bincount(which, minlength=len(SETS)).float() / len(which)
    torch.testing.assert_close(freq, torch.tensor([share[s] / total for s in SETS]), atol=0.015, rtol=0)


def test_lnscc_eta_schedule_and_resume_state() -> None:
    data = blobs()
    method, config, views = setup("lnscc", data)
    etas = []
    for _ in range(3):
        out = one_step(method, config, views, data)
        etas.append(float(out.parts["eta"]))
    assert etas == pytest.approx([0.05, 0.10, 0.15])  # eta = min(delta * n_i, xi)
    method.steps.fill_(1000)
    assert method.eta() == 5.0
    fresh, _, _ = setup("lnscc", data)
    fresh.load_state_dict(method.state_dict())
    assert bool(fresh.graph_ready) and int(fresh.steps) == 1000
    assert fresh.pairs().sizes() == method.pairs().sizes()


def test_lnscc_heads_follow_the_paper() -> None:
    method, config, _ = setup("lnscc", blobs())
    model = method.model
    assert isinstance(model.instance_head, torch.nn.Linear) and model.instance_head.out_features == 64
    assert model.cluster_head[0] is model.instance_head  # U = FC(Z)
    assert model.cluster_head[1].out_features == 32 and model.cluster_head[-1].out_features == 3


def test_gcc_builds_its_graph_without_the_epoch_hook(digits: DataSet) -> None:
    method, config, views = setup("gcc", digits)
    assert not bool(method.graph_ready)
    z = embed(method.model, digits.inputs, DEVICE)["z"]  # before the step moves the BN statistics
    idx = torch.arange(16)
    out = method.training_step(Batch(inputs=digits.inputs[idx], indices=idx, views=views, dataset_inputs=digits.inputs))
    assert bool(method.graph_ready) and torch.isfinite(out.loss)
    torch.testing.assert_close(method.bank, F.normalize(torch.from_numpy(z), dim=1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["gcc", "lnscc"])
def test_graph_methods_resume_with_their_graph(name: str, digits: DataSet, tmp_path) -> None:  # noqa: ANN001
    from clustering.checkpoint import load_checkpoint
    from clustering.train import train

    config = TrainConfig(method=name, dataset="digits", batch_size=16, max_steps=5, out=str(tmp_path), threads=1,
                         run_id="r", eval_every=1, projections="none")  # fmt: skip
    first = train(config, data=digits, progress=False)
    ckpt = load_checkpoint(first.run_dir / "checkpoints" / "last.pt")
    assert bool(ckpt["model"]["graph_ready"])
    table = "neighbors" if name == "gcc" else "knn_index"
    second = train(resume=first.run_dir, overrides={"max_steps": 9}, data=digits, progress=False)
    assert second.step == 9 and second.state == "finished"
    after = load_checkpoint(second.run_dir / "checkpoints" / "last.pt")
    if name == "lnscc":  # built once from the inputs, carried by the checkpoint
        torch.testing.assert_close(after["model"][table], ckpt["model"][table])
        assert int(after["model"]["steps"]) == 9


def test_gather_views_gathers_each_view_on_its_own() -> None:
    # Two "processes": this one's rows, then the other's (+100); views must not interleave.
    batch = Batch(inputs=torch.zeros(2, 1), indices=torch.arange(2), views=None,
                  gather=lambda x: torch.cat([x, x + 100]))  # fmt: skip
    stacked = torch.arange(6.0)[:, None]  # [view 0: 0, 1; view 1: 2, 3; view 2: 4, 5]
    views = batch.gather_views(stacked, 3)
    assert [v.flatten().tolist() for v in views] == [[0, 1, 100, 101], [2, 3, 102, 103], [4, 5, 104, 105]]
    with pytest.raises(ValueError, match="do not split into 4 views"):
        batch.gather_views(stacked, 4)


@pytest.mark.parametrize("name", ["uccc", "cc", "sacc", "gcc"])
def test_reseed_empty_splits_the_only_used_cluster_in_every_image_method(name: str, digits: DataSet) -> None:
    from clustering.reseed import last_linear

    small = DataSet(inputs=digits.inputs[:32], labels=digits.labels[:32], class_names=digits.class_names,
                    name="digits", num_classes=10)  # fmt: skip
    method, config, views = setup(name, small, reseed_empty=True)
    layer = last_linear(method.model.cluster_head)
    with torch.no_grad():
        layer.bias.zero_()
        layer.bias[3] = 50.0  # every image picks cluster 3: nine clusters are empty
    one_step(method, config, views, small, n=16)
    one_step(method, config, views, small, n=16)  # 32 images seen: the window (one epoch) is full
    before = layer.weight.detach().clone()
    one_step(method, config, views, small, n=16)  # the re-seeding happens before this step's forward
    assert int(method.reseeder.reseeds) == 1  # one donor (cluster 3) splits once per window
    changed = (layer.weight.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [0, 3]  # the first empty cluster took half of cluster 3
    bias = layer.bias.detach()  # the halves' biases sit either side of the donor's, less log 2
    assert (float(bias[0]) + float(bias[3])) / 2 == pytest.approx(50.0 - math.log(2.0))
    with torch.no_grad():  # split along the members' principal direction: both halves get images
        chosen = method.model(small.inputs.float() / 255.0).logits.argmax(dim=1)
    assert set(chosen.tolist()) == {0, 3}


@pytest.mark.parametrize("name", ["uccc", "cc", "sacc", "gcc"])
@pytest.mark.parametrize("final", [True, False])
def test_reseed_final_fills_every_empty_cluster_at_the_end_of_a_run(name: str, final: bool, digits: DataSet) -> None:
    """Every image in one cluster: at the run's end ``reseed_final`` splits clusters into the nine
    empty ones (over a few rounds: each round a donor splits once) until every cluster has images
    of the clean data set; without it the hook changes nothing."""
    from clustering.reseed import last_linear

    method, _, _ = setup(name, digits, reseed_empty=True, reseed_final=final)
    layer = last_linear(method.model.cluster_head)
    with torch.no_grad():
        layer.bias.zero_()
        layer.bias[3] = 50.0
    before = layer.weight.detach().clone()
    context = EpochContext(epoch=5, device=DEVICE, num_samples=len(digits),
                           embed=lambda: embed(method.model, digits.inputs, DEVICE))  # fmt: skip
    notes = method.on_train_end(context)
    clusters = embed(method.model, digits.inputs, DEVICE)["probs"].argmax(axis=1)
    if final:
        assert len(np.unique(clusters)) == 10 and set(notes) == {"final_reseeds"} and notes["final_reseeds"] >= 9
    else:
        assert notes == {} and torch.equal(layer.weight.detach(), before) and set(clusters.tolist()) == {3}


@pytest.mark.parametrize("name", ["uccc", "cc", "sacc"])
@pytest.mark.parametrize("detach", [False, True])
def test_detach_head_input_keeps_the_cluster_loss_out_of_the_backbone(digits: DataSet, name: str,
                                                                      detach: bool) -> None:  # fmt: skip
    """``detach_head_input``: the cluster loss (UCCC's Eq. 6, CC's and SACC's column contrast) trains
    the cluster head and no backbone weight; the instance loss still trains the backbone, and the
    outputs are the same numbers either way."""
    method, config, views = setup(name, digits, detach_head_input=detach)
    torch.manual_seed(1)
    out = one_step(method, config, views, digits)
    out.parts["loss_clu"].backward(retain_graph=True)
    backbone = [p.grad for p in method.model.backbone.parameters()]
    head = [p.grad for p in method.model.cluster_head.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in head)
    reached = any(g is not None and g.abs().sum() > 0 for g in backbone)
    assert reached is not detach
    method.zero_grad()
    out.parts["loss_ins"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.model.backbone.parameters())
    torch.manual_seed(1)
    other, _, other_views = setup(name, digits, detach_head_input=not detach)
    torch.manual_seed(1)
    again = one_step(other, config, other_views, digits)
    assert torch.allclose(again.loss, out.loss)
