"""Backbones (CIFAR-stem ResNet18/34 with a Mish stem, small CNN, MLP) and heads."""

from clustering.models.backbones import BACKBONES, backbone_names, build_backbone
from clustering.models.heads import ClusterModel, Outputs, mlp_head

__all__ = ["BACKBONES", "ClusterModel", "Outputs", "backbone_names", "build_backbone", "mlp_head"]
