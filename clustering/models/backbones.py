"""Backbones: encoders f(x) -> (B, feature_dim) features, and a registry by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


class SmallCNN(nn.Module):
    """A fast CNN for small grayscale images (digits at 16 px, MNIST at 28 px).

    Three stages of conv3x3-BN-ReLU pairs; the first two end in a 2x2 max-pool, the last in
    global average pooling, so any input size >= 8 px works.
    """

    def __init__(self, in_channels: int, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, width in enumerate(widths):
            layers += [
                nn.Conv2d(prev, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            ]  # fmt: skip
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            prev = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def resnet(depth: int, in_channels: int, image_size: int) -> nn.Module:
    """torchvision's ResNet18/34 with the paper's stem: first conv stride 1; for images under
    64 px (CIFAR) a 3x3 first conv, no max-pool and Mish after the first conv."""
    from torchvision.models import resnet18, resnet34

    net = {18: resnet18, 34: resnet34}[depth](weights=None)
    if image_size < 64:
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        net.relu = nn.Mish(inplace=True)  # torchvision uses this module only in the stem
    else:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=1, padding=3, bias=False)
    net.fc = nn.Identity()
    net.out_dim = 512
    return net


class MLP(nn.Module):
    """Fully connected encoder for vectors (or flattened images), e.g. LNSCC's D-500-500-2000."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...] = (500, 500, 2000), batch_norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_dim
        for width in hidden:
            layers.append(nn.Linear(prev, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU(inplace=True))
            prev = width
        self.net = nn.Sequential(*layers)
        self.out_dim = prev

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    build: Callable[[tuple[int, ...], int], nn.Module]  # (input_shape without batch, image_size)
    description: str
    kind: str  # "image" or "any"


def _flat_dim(shape: tuple[int, ...]) -> int:
    return int(torch.tensor(shape).prod().item())


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec("cnn", lambda s, size: SmallCNN(s[0]), "small 6-conv CNN for small grayscale images", "image"),
        BackboneSpec("resnet18", lambda s, size: resnet(18, s[0], size), "ResNet18, paper stem", "image"),
        BackboneSpec("resnet34", lambda s, size: resnet(34, s[0], size), "ResNet34, paper stem", "image"),
        BackboneSpec("mlp", lambda s, size: MLP(_flat_dim(s)), "MLP 500-500-2000 on flattened inputs", "any"),
    ]
}


def backbone_names() -> list[str]:
    return sorted(BACKBONES)


def build_backbone(name: str, input_shape: tuple[int, ...], image_size: int | None = None) -> nn.Module:
    """A backbone with an ``out_dim`` attribute, for inputs of ``input_shape`` (no batch dim)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(backbone_names())}")
    spec = BACKBONES[name]
    if spec.kind == "image" and len(input_shape) != 3:
        raise ValueError(f"backbone {name!r} needs images (C, H, W), got inputs of shape {input_shape}; use 'mlp'")
    return spec.build(tuple(input_shape), image_size or (input_shape[-1] if len(input_shape) == 3 else 0))
