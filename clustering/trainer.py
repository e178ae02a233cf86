"""One training process's step: the method, optimiser, scheduler, views, precision and its state.

``Trainer.step(indices)`` is the single definition of an optimiser step: the training loop
(:mod:`clustering.train`), ``bench speed``, ``bench distributed`` and the DDP tests all call it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from clustering import distributed
from clustering.checkpoint import capture_rng, restore_rng
from clustering.config import TrainConfig
from clustering.data import DataSet
from clustering.errors import ConfigError
from clustering.evaluation import embed_all
from clustering.faults import fault_point
from clustering.head_refit import end_steps, refit_at_end, refittable
from clustering.methods import Batch, EpochContext
from clustering.metrics import accuracy
from clustering.self_label import SelfLabelSettings, SelfLabelStep
from clustering.setup import build_method, build_optimizer, build_scheduler, seed_everything
from clustering.views import ViewMaker

#: CPU flags of native bfloat16 arithmetic (Linux /proc/cpuinfo names); without them bf16 autocast
#: is emulated and slower than fp32.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The mixed-precision type of a run, or None for full fp32.

    CUDA: float16 (with a gradient scaler) unless ``amp`` is ``off``. CPU: bfloat16 when ``amp`` is
    ``on``, or ``auto`` on a CPU with native bf16; fp32 elsewhere.
    """
    if config.amp == "off":
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_bf16() and config.amp in ("on", "auto"):
        return torch.bfloat16
    return None


class NonFiniteLoss(FloatingPointError):
    """The loss of a step was NaN or infinite; the parameters were not updated."""


class Trainer:
    """Everything one process needs to take optimiser steps on a resolved config.

    ``data`` is at the run's resolution (:func:`clustering.setup.prepare_data`). Under DDP every
    process builds one; ``step`` takes the global batch and trains on this process's slice.
    """

    def __init__(self, config: TrainConfig, data: DataSet, device: torch.device, rank: int = 0,
                 world_size: int = 1) -> None:  # fmt: skip
        self.config, self.data, self.device = config, data, device
        self.rank, self.world_size = rank, world_size
        seed_everything(config.seed)
        self.method = build_method(config, data, device)
        self.model = self.method.model
        ends = ("refit_head", "split_merge", "kmeans_restarts", "umap_gmm")  # the end-of-run rewrites of the head
        unfit = refittable(self.model.cluster_head) if any(getattr(config, name) for name in ends) else None
        for name in ends:
            if unfit and getattr(config, name) and name not in config.data_defaults:  # asked for by name
                raise ConfigError(f"{name}: {unfit}; run without --{name.replace('_', '-')}")
        self.refit_head = bool(config.refit_head) and unfit is None
        self.split_merge = bool(config.split_merge) and unfit is None
        self.kmeans_restarts = int(config.kmeans_restarts or 0) if unfit is None else 0
        # True, False or IF_UNEVEN (decided in finish, from the head's partition then)
        self.umap_gmm: bool | str = (config.umap_gmm or False) if unfit is None else False
        self.channels_last = channels_last_for(config, data, device)
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)
        stepper: nn.Module = self.method
        if config.self_label is not None:
            stepper = SelfLabelStep(self.method, SelfLabelSettings(config.self_label, config.self_label_threshold,
                                                                   config.self_label_weight))  # fmt: skip
        # DDP (and SyncBN) around the step when world_size > 1, before the optimizer sees the parameters.
        self.step_fn: Callable[[Batch], Any] = distributed.wrap(stepper, device, sync_bn=config.sync_bn)
        self.optimizer = build_optimizer(config, self.method.parameters())
        self.scheduler = build_scheduler(config, self.optimizer)
        self.amp_dtype = autocast_dtype(config, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.views = ViewMaker(config, data, device, rank=rank)
        self.steps_done = 0  # optimiser steps so far (restored on resume), for methods' schedules
        self._embedding: tuple[int, dict[str, np.ndarray]] | None = None  # (steps_done, embed()), see embed
        small = data.inputs.numel() < 2**30
        self.inputs = data.inputs.to(device) if device.type == "cuda" and small else data.inputs

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def step(self, indices: Tensor, progress: float = 0.0) -> dict[str, float]:
        """One optimiser step on the global batch ``indices`` (data-set positions, (N,)); ``progress``
        is how far the run is, in [0, 1] (the learning-rate schedule and the self-labelling stage
        follow it).

        Returns the float loss and its named parts. Raises :class:`NonFiniteLoss` (before any
        update) when the loss is NaN or infinite.
        """
        idx = distributed.shard(indices)  # this process's contiguous slice of the global batch
        x = self.inputs[idx.to(self.inputs.device)].to(self.device, non_blocking=True)
        batch = Batch(inputs=x, indices=idx.to(self.device), views=self.views, dataset_inputs=self.inputs,
                      gather=distributed.gather, step=self.steps_done, progress=progress)  # fmt: skip
        with self.autocast():
            out = self.step_fn(batch)
        loss = out.loss
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss became {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.apply(progress)
        self.scaler.scale(loss).backward()
        fault_point("step", self.steps_done + 1)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.steps_done += 1
        return {"loss": float(loss.detach())} | {k: float(v.detach()) for k, v in out.parts.items()}

    def embed(self) -> dict[str, np.ndarray]:
        """The model over the whole data set without augmentation (probs, z, h), on every rank.

        An epoch's evaluation and the next epoch's hook (UCCC's neighbour table, GCC's graph) see
        the same weights, so the embedding is kept until the next step or hook: at 200 classes of
        20 images an embedding cost 0.7-1 s of a 5 s epoch. Callers must not modify its arrays.
        """
        if self._embedding is not None and self._embedding[0] == self.steps_done:
            return self._embedding[1]
        emb = embed_all(self.model, self.inputs, self.device, self.config.eval_batch_size,
                        self.amp_dtype is not None, self.amp_dtype)  # fmt: skip
        self._embedding = (self.steps_done, emb)
        return emb

    def start_epoch(self, epoch: int, progress: float = 0.0) -> None:
        """The method's epoch hook (GCC rebuilds its graph here); every method has one. ``progress``
        is the run's, as for :meth:`step`."""
        self.method.on_epoch_start(EpochContext(epoch=epoch, device=self.device, num_samples=len(self.data),
                                                embed=self.embed, progress=progress))  # fmt: skip
        self._embedding = None  # a hook may edit the model without a step (LNSCC fits its head)

    def finish(self, epoch: int) -> dict[str, float]:
        """The method's end-of-run hook (UCCC re-seeds clusters left empty), then UMAP + GMM or the head
        refit, the k-means restarts and the split-and-merge moves where the config asks for them
        (``clustering.head_refit``); their scalars to log."""
        context = EpochContext(epoch=epoch, device=self.device, num_samples=len(self.data), embed=self.embed)
        notes = self.method.on_train_end(context)
        self._embedding = None  # the hook may have edited the model
        if self.refit_head or self.split_merge or self.kmeans_restarts or self.umap_gmm:
            probs = self.embed()["probs"]
            trained = probs.argmax(axis=1)
            ends, decided = end_steps(probs, lloyd=self.refit_head, split_merge=self.split_merge,
                                      restarts=self.kmeans_restarts, umap_gmm=self.umap_gmm)  # fmt: skip
            notes |= decided
            refit = refit_at_end(self.model.cluster_head, self.embed, seed=self.config.seed, **ends)
            notes |= refit
            self._embedding = None
            if self.data.labels is not None and "refit_moved" in refit:  # the head as trained, beside the new one
                notes |= {"acc_as_trained": accuracy(self.data.labels, trained),
                          "n_nonempty_as_trained": float(np.unique(trained).size)}  # fmt: skip
        return notes

    def state_dict(self) -> dict[str, Any]:
        """Model, optimiser, scheduler, scaler and RNG states (every rank's augmentation stream)."""
        rng = capture_rng(self.views.generator)
        state = {"model": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "rng": rng}  # fmt: skip
        if self.world_size > 1:  # collective: every rank must call state_dict together
            state["rng_ranks"] = distributed.all_gather_object(rng)
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["model"])
        self._embedding = None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.steps_done = int(state["step"])
        if "scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        rng_ranks = state.get("rng_ranks") or []
        same_world = len(rng_ranks) == self.world_size
        restore_rng(rng_ranks[self.rank] if same_world else state["rng"], self.views.generator)
        if self.rank > 0 and not same_world:
            # Resumed on another number of processes: rank 0 continues the saved stream, the others
            # start fresh ones (not bit-exact then, but each rank still augments independently).
            self.views.generator.manual_seed(self.config.seed + 1 + 1_000_003 * self.rank + state["step"])


def channels_last_for(config: TrainConfig, data: DataSet, device: torch.device) -> bool:
    """Channels-last memory for convolutional backbones (``channels_last`` None = on for images)."""
    if config.channels_last is not None:
        return bool(config.channels_last)
    return data.kind == "image" and config.backbone != "mlp"


def epoch_permutation(seed: int, epoch: int, n: int) -> Tensor:
    """The sample order of an epoch: a pure function of (seed, epoch), so resume is exact."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)
