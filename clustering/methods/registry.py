"""Method registry and the small protocol every method follows.

A method is an ``nn.Module`` that owns a :class:`~clustering.models.ClusterModel` (``.model``)
plus any state of its own (registered as buffers so checkpoints carry it), and implements::

    training_step(batch: Batch) -> StepOutput     # loss and its parts for one batch

and optionally::

    on_epoch_start(context: EpochContext) -> None  # e.g. GCC rebuilds its kNN graph
    on_train_end(context: EpochContext) -> dict     # e.g. UCCC re-seeds the clusters left empty

Each method class declares ``name``, ``description``, a ``Params`` dataclass holding its own
hyperparameters with the paper's defaults, and ``train_defaults`` (optimizer, lr, batch size,
...) that the trainer uses when the user does not set them. ``train_defaults.by_backbone``
may replace some of them, and Params defaults under its ``"params"`` key, for one backbone
(``TrainDefaults.on``): the papers tune for ResNets, the CPU runs use a small CNN.
Methods subclass :class:`ClusterMethod`, which holds no behaviour beyond no-op hooks and the
loading of its declared per-sample buffers.

Multi-process (DDP) training: a batch-level loss must see the global batch, so methods pass their
stacked views through ``batch.gather_views`` (each view gathered on its own) first; buffers a
step updates (memory banks) must be updated from gathered rows so every process keeps the same
copy. A method whose step leaves parameters without gradient sets the class attribute
``ddp_find_unused_parameters = True``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from clustering.errors import ConfigError
from clustering.methods.defaults import TrainDefaults
from clustering.models import ClusterModel

if TYPE_CHECKING:  # clustering.views imports the data layer; only the annotation needs it here
    from clustering.views import ViewMaker


@dataclass
class Batch:
    """One training batch.

    inputs: raw batch on the training device (uint8 images or float vectors), (B, ...).
    indices: (B,) positions of the samples in the data set (GCC/LNSCC look neighbours up).
    views: makes augmented views of ``inputs`` with the run's random generator.
    dataset_inputs: the whole data set's inputs (N, ...), indexable by ``indices``, for methods
        that fetch other samples than the batch (GCC's graph neighbours, LNSCC's pairs); may live
        on the CPU while the batch is on the training device.
    gather: under DDP each process holds a slice of the global batch; ``gather(x)`` returns the
        rows of every process, in rank order, differentiably (:func:`clustering.distributed.gather`).
        Call it on each view separately before any loss that looks at the whole batch (negatives,
        cluster columns, graphs, entropy) so that [gather(view a); gather(view b)] is the global
        [view a (N); view b (N)]. The identity in a single process.
    step: optimiser steps taken before this batch (for schedules inside a method).
    progress: how far the run is, in [0, 1]: its time budget, epochs or steps, whichever is
        furthest along (for stages such as :mod:`clustering.self_label`).
    """

    inputs: Tensor
    indices: Tensor
    views: ViewMaker
    dataset_inputs: Tensor | None = None
    gather: Callable[[Tensor], Tensor] = field(default=lambda x: x)
    step: int = 0
    progress: float = 0.0

    @property
    def generator(self) -> torch.Generator | None:
        """The run's random stream for draws inside a step (GCC's random neighbour, LNSCC's pairs):
        the augmentation generator, saved in checkpoints, so a resumed run draws the same."""
        return getattr(self.views, "generator", None)

    def first_view_rows(self, rows: Tensor) -> Tensor:
        """The first view's rows of ``rows`` (views stacked, this process's batch first), detached,
        over the global batch: what a per-epoch statistic (the re-seeding counts) needs, with one
        gather instead of one per view."""
        return self.gather(rows.detach()[: self.inputs.shape[0]])

    def gather_views(self, rows: Tensor, views: int) -> list[Tensor]:
        """``rows`` of this process's views stacked as [view 1 (n); view 2 (n); ...] -> each view
        over the global batch, in rank order: the one place a method's step owns the DDP gather.

        Gathering the whole stack at once would interleave the processes' views; each view is
        gathered on its own so that view v of sample i keeps row i of block v everywhere.
        """
        if rows.shape[0] % views:
            raise ValueError(f"{rows.shape[0]} rows do not split into {views} views")
        n = rows.shape[0] // views
        return [self.gather(rows[v * n : (v + 1) * n]) for v in range(views)]


@dataclass
class StepOutput:
    loss: Tensor  # scalar to minimise
    parts: dict[str, Tensor] = field(default_factory=dict)  # named scalar parts, for logging


@dataclass
class EpochContext:
    """What a method may look at between epochs."""

    epoch: int
    embed: Callable[[], Any]  # () -> dict of numpy arrays (probs, z, h) over the whole data set
    device: torch.device
    num_samples: int
    progress: float = 0.0  # how far the run is, in [0, 1], as ``Batch.progress``


class ClusterMethod(nn.Module):
    """What every registered method is: a module that owns a ``ClusterModel`` and makes one loss.

    Subclasses set ``name``, ``description``, ``Params`` (a dataclass of their hyperparameters with
    the papers' defaults) and ``train_defaults``, and implement ``training_step``. They may override
    ``on_epoch_start`` and ``on_train_end`` (no-ops here). ``input_kinds`` says which data kinds the
    method trains on.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type]
    train_defaults: ClassVar[TrainDefaults]
    input_kinds: ClassVar[tuple[str, ...]] = ("image",)
    ddp_find_unused_parameters: ClassVar[bool] = False
    #: Buffers with one row per training sample (GCC's memory bank, LNSCC's kNN graph). A checkpoint
    #: evaluated on another split builds the method for another N; loading takes the checkpoint's
    #: shapes for these (they are not used to evaluate), and nothing else is resized.
    sample_buffers: ClassVar[tuple[str, ...]] = ()
    #: Parameters whose default comes from the data's shape: name -> rule taking a
    #: ``clustering.data_defaults.DataProfile`` and the value the method would use without the rule
    #: (its field default, or its backbone default; a rule may ignore it) and giving a ``Choice``,
    #: applied by ``resolve_config`` where the user left the parameter unset (None), kept with its
    #: reason in ``data_defaults``.
    param_rules: ClassVar[dict[str, Callable[[Any, Any], Any]]] = {}
    #: The loss contrasts clusters' columns of probabilities over the batch (CC's cluster-level
    #: NT-Xent, GCC's AGC): the batch default then keeps several images per cluster in a batch
    #: (``clustering.data_defaults.choose_batch_size``).
    column_contrast: ClassVar[bool] = False
    #: The model keeps ``ClusterModel``'s two-layer softmax cluster head, which the end-of-run refit
    #: (``clustering.head_refit``) can rewrite; LNSCC replaces it with a Student-t head.
    softmax_head: ClassVar[bool] = True
    #: The head trains under a uniform prior on cluster sizes (CC's ``log C - H(p)``, GCC's L_CR):
    #: the end-of-run k-means restarts are then on by default (``clustering.kmeans_restarts``).
    uniform_prior: ClassVar[bool] = False
    model: ClusterModel

    def training_step(self, batch: Batch) -> StepOutput:
        raise NotImplementedError

    def on_epoch_start(self, context: EpochContext) -> None:
        """Called before each epoch's first step (not on a mid-epoch resume)."""

    def on_train_end(self, context: EpochContext) -> dict[str, float]:
        """Called once when a run finishes (its epochs or its budget done; not when it is stopped,
        fails or is interrupted), before its final evaluation and checkpoint: a method may edit its
        model here. Returns named scalars for that evaluation's metrics row."""
        return {}

    def on_load(self) -> None:
        """Called before a checkpoint's state is loaded: drop anything derived from the buffers."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        # torch's per-module loading hook: the one place the per-sample buffers adopt their shapes.
        for name in self.sample_buffers:
            incoming, current = state_dict.get(prefix + name), self._buffers.get(name)
            if incoming is not None and current is not None and incoming.shape != current.shape:
                self._buffers[name] = torch.zeros(incoming.shape, dtype=current.dtype, device=current.device)
        self.on_load()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


_METHODS: dict[str, type[ClusterMethod]] = {}


def register_method(cls: type[ClusterMethod]) -> type[ClusterMethod]:
    """Class decorator: registers a method under ``cls.name`` (fails on duplicates)."""
    if not issubclass(cls, ClusterMethod):
        raise TypeError(f"method class {cls.__name__} must subclass ClusterMethod")
    for attr in ("name", "description", "Params", "train_defaults", "training_step"):
        if not hasattr(cls, attr):
            raise TypeError(f"method class {cls.__name__} lacks {attr!r}")
    if not dataclasses.is_dataclass(cls.Params):
        raise TypeError(f"{cls.__name__}.Params must be a dataclass")
    if not isinstance(cls.train_defaults, TrainDefaults):
        raise TypeError(f"{cls.__name__}.train_defaults must be a TrainDefaults")
    if cls.name in _METHODS:
        raise ValueError(f"method {cls.name!r} is registered twice")
    _METHODS[cls.name] = cls
    return cls


def method_names() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> type[ClusterMethod]:
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; valid: {', '.join(method_names())}") from None


def param_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls.Params)}


def default_params(cls: type) -> dict[str, Any]:
    return dataclasses.asdict(cls.Params())


def backbone_overrides(cls: type) -> dict[str, dict[str, Any]]:
    """Per backbone, the training and parameter defaults that replace the registered ones, in one
    flat dict each (what ``methods`` and the studio's launch form show)."""
    return cls.train_defaults.overrides()


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Convert a CLI string (or JSON value) to the field's annotated type."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"typing": typing})  # annotations are postponed strings
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, args[0], name)
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"parameter {name!r} must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    try:
        if annotation is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if annotation in (int, float, str):
            if annotation is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return annotation(value)
    except (TypeError, ValueError):
        raise ConfigError(f"parameter {name!r} expects {annotation.__name__}, got {value!r}") from None
    return value


def resolve_params(cls: type, overrides: dict[str, Any]) -> Any:
    """The method's Params with ``overrides`` applied; unknown names list the valid ones."""
    fields = param_fields(cls)
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(
            f"method {cls.name!r} has no parameter(s) {', '.join(unknown)}; its parameters: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls.Params)
    values = {k: _coerce(v, hints.get(k, fields[k].type), k) for k, v in overrides.items()}
    try:
        params = cls.Params(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid parameters for method {cls.name!r}: {exc}") from None
    validate = getattr(params, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as exc:
            raise ConfigError(f"invalid parameters for method {cls.name!r}: {exc}") from None
    return params
