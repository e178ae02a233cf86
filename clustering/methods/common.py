"""Checks and helpers shared by several methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import Tensor, nn

from clustering.data_defaults import detach_head_input_for
from clustering.errors import ConfigError
from clustering.methods.defaults import TrainDefaults
from clustering.models import ClusterModel

T = TypeVar("T")


def set_or_rule(value: T | None, rule: Callable[[int], T], num_clusters: int) -> T:
    """A parameter as set, or, unset (a method built without ``resolve_config``, which applies the
    method's ``param_rules``), the same rule's value for ``num_clusters``."""
    return value if value is not None else rule(num_clusters)


def set_detach_head_input(model: ClusterModel, value: bool | None, num_samples: int) -> None:
    """The cluster head reads the backbone features without gradient (the cluster loss trains the head
    only) as ``value`` says, or, unset (a method built without ``resolve_config``), by the rule of
    ``clustering.data_defaults.choose_detach_head_input`` for the images per cluster."""
    per_cluster = num_samples / model.num_clusters
    model.detach_cluster_input = value if value is not None else detach_head_input_for(per_cluster)


def is_vector_model(model: ClusterModel) -> bool:
    """True when the model was built for (N, D) vectors: its input statistics are (1, D), not
    (1, C, 1, 1) as for images (see ``clustering.train._build``)."""
    return model.input_mean.dim() == 2


def require_images(model: ClusterModel, method: str) -> None:
    """Refuse vector data up front, before any augmentation is attempted."""
    if is_vector_model(model):
        raise ConfigError(
            f"method {method!r} learns from augmented views of images, and this data set holds feature "
            f"vectors (kind 'vector') for which no image augmentation exists; use --method lnscc for vectors"
        )


def out_features(head: nn.Module) -> int:
    """Output width of a head: the ``out_features`` of its last Linear layer."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"{type(head).__name__} has no Linear layer")
    return int(linears[-1].out_features)


def fetch(dataset_inputs: Tensor | None, indices: Tensor, like: Tensor, method: str) -> Tensor:
    """The data set's inputs at ``indices``, on ``like``'s device (the inputs may stay on the CPU)."""
    if dataset_inputs is None:
        raise ConfigError(f"method {method!r} needs Batch.dataset_inputs (the trainer fills it)")
    return dataset_inputs[indices.to(dataset_inputs.device)].to(like.device, non_blocking=True)


def paper_adam_defaults(cnn_scheduler: str | None = None, **batch: int) -> TrainDefaults:
    """Training defaults of the Adam-trained methods (UCCC, CC, SACC): the papers' Adam 3e-4 with no
    weight decay or schedule, except 1e-3 on the small CPU CNN, which is not in the papers and
    converges several times faster with it (README, ablation), and, where given, the schedule
    ``cnn_scheduler`` there (UCCC: ``cosine-tail``, measured on the CNN only). ``batch`` is ``batch_size=N`` or
    ``batch_size_per_10_clusters=N``."""
    on_cnn: dict[str, object] = {"lr": 1e-3} | ({"scheduler": cnn_scheduler} if cnn_scheduler else {})
    return TrainDefaults(optimizer="adam", lr=3e-4, weight_decay=0.0, scheduler="none",
                         by_backbone={"cnn": on_cnn}, **batch)  # fmt: skip
