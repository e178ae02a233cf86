"""Clustering methods, one small module each, registered by name."""

from clustering.methods import cc, gcc, lnscc, sacc, uccc  # noqa: F401  (registers)
from clustering.methods.registry import (
    Batch,
    ClusterMethod,
    EpochContext,
    StepOutput,
    backbone_overrides,
    default_params,
    get_method,
    method_names,
    register_method,
    resolve_params,
)

__all__ = [
    "Batch", "ClusterMethod", "EpochContext", "StepOutput", "backbone_overrides", "default_params", "get_method",
    "method_names", "register_method", "resolve_params",
]  # fmt: skip
