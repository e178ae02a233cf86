"""Every backbone: forward/backward on a tiny batch, output shapes, every parameter gets a gradient."""

from __future__ import annotations

import pytest
import torch

from clustering.models import ClusterModel, backbone_names, build_backbone

INPUTS = {
    "cnn": [(1, 16, 16), (1, 28, 28), (3, 32, 32)],
    "resnet18": [(3, 32, 32), (1, 16, 16), (3, 64, 64)],
    "resnet34": [(3, 32, 32)],
    "mlp": [(1, 8, 8), (20,)],
}


def test_every_registered_backbone_has_cases() -> None:
    assert set(INPUTS) == set(backbone_names())


@pytest.mark.parametrize("name,shape", [(n, s) for n, shapes in INPUTS.items() for s in shapes])
def test_backbone_forward_backward(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(name, shape)
    model = ClusterModel(backbone, num_clusters=5, instance_dim=16)
    x = torch.rand(4, *shape)
    out = model(x)
    assert out.h.shape == (4, backbone.out_dim)
    assert out.z.shape == (4, 16)
    assert out.logits.shape == (4, 5)
    torch.testing.assert_close(out.probs.sum(1), torch.ones(4))
    (out.z.pow(2).mean() + out.logits.pow(2).mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing}"
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, f"parameters with an all-zero gradient: {zero}"


def test_resnet_cifar_stem_follows_the_paper() -> None:
    net = build_backbone("resnet18", (3, 32, 32))
    assert net.conv1.stride == (1, 1) and net.conv1.kernel_size == (3, 3)
    assert isinstance(net.maxpool, torch.nn.Identity)
    assert isinstance(net.relu, torch.nn.Mish)
    large = build_backbone("resnet18", (3, 96, 96))
    assert large.conv1.stride == (1, 1) and not isinstance(large.maxpool, torch.nn.Identity)


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="valid: .*resnet18"):
        build_backbone("vgg", (3, 32, 32))


def test_image_backbone_refuses_vectors() -> None:
    with pytest.raises(ValueError, match="needs images"):
        build_backbone("cnn", (64,))


def test_cluster_model_needs_two_clusters() -> None:
    with pytest.raises(ValueError, match=">= 2"):
        ClusterModel(build_backbone("mlp", (4,)), num_clusters=1)


def test_the_cluster_head_runs_in_float32_under_autocast() -> None:
    """Under bf16 autocast the backbone runs in bf16 but the cluster head does not: its argmax is
    the clustering, and the end-of-run re-seeding computes it in float32 from the same features."""
    torch.manual_seed(0)
    model = ClusterModel(build_backbone("cnn", (1, 16, 16), 16), num_clusters=50).eval()
    x = torch.rand(64, 1, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.h.dtype == torch.bfloat16 and out.z.dtype == torch.bfloat16
    assert out.logits.dtype == torch.float32 and out.probs.dtype == torch.float32
    with torch.no_grad():
        expected = model.cluster_head(out.h.float())
    torch.testing.assert_close(out.logits, expected, rtol=1e-6, atol=1e-6)
