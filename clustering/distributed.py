"""Multi-process (DistributedDataParallel) training: process group, global-batch gathers, SyncBN.

Launch with torchrun; every process runs the same trainer on its shard of each batch::

    torchrun --nproc-per-node 4 -m clustering train --method uccc ...

The contract that makes P processes with batch N/P optimise the *same* objective as one
process with batch N:

* Every rank computes the batch-level losses (NT-Xent negatives, CC's columns, UCCC's graphs)
  over the **global** batch: a method calls ``batch.gather`` (:func:`gather`) on each view's
  rows and gets the rows of all ranks, in rank order, so ``[gather(view a); gather(view b)]`` is
  exactly the single-process ``[view a (N); view b (N)]``. The gather is differentiable: its
  backward sums the gradient over ranks (every rank computed the same global loss, so the local
  rows receive P times their single-process gradient), and DDP's gradient averaging divides the
  P back out. ``tests/test_distributed.py`` checks loss, gradients and a few optimiser steps.
* Batch norm normalises over the global batch (:func:`convert_sync_batchnorm`), otherwise the
  forward pass itself differs from the single-process one.
* A loss that is a mean of per-sample (or per-pair) terms needs no gather: DDP's averaging of
  the processes' local means is already the global mean. A method may mix both kinds.
* What cannot match a single process bit for bit: each process draws its own augmentations
  (its own generator), just as one process would draw different ones for another batch order.
* All of this is the identity in a single process, so the single-process path is unchanged.

Everything here works with the gloo backend on CPU processes (how it is tested) and NCCL on GPUs.
"""

from __future__ import annotations

import gc
import os
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")

# ----------------------------------------------------------------------------- process group


def env_world_size() -> int:
    """WORLD_SIZE as set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0


def is_main() -> bool:
    """Rank 0, the only process that writes the run directory (True when not distributed)."""
    return rank() == 0


def init() -> bool:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR/PORT in the env).

    Returns whether this call created the group (the caller then destroys it); a no-op outside
    torchrun and when the caller (e.g. a test) already created the group. With CUDA present the
    group has two backends: NCCL for CUDA tensors (gradients, gathers, batch norm) and gloo for
    CPU tensors (flags, evaluation rows, objects), so a ``--device cpu`` run also works there.
    Called before the run's config is known (a resumed run's config is read by rank 0 and
    broadcast), hence no dependence on the training device.
    """
    if dist.is_initialized() or env_world_size() <= 1:
        return False
    backend = "gloo"
    if torch.cuda.is_available():
        backend = "cpu:gloo,cuda:nccl"
        lr = int(os.environ.get("LOCAL_RANK", "0"))
        if lr < torch.cuda.device_count():
            torch.cuda.set_device(lr)  # before NCCL starts, so it binds this process's GPU
    dist.init_process_group(backend=backend)
    return True


def place(device: torch.device) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` for a CUDA run under DDP (one GPU each)."""
    if is_distributed() and device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    return device


def shutdown(created: bool) -> None:
    """Destroy the group this process created, then free what still refers to it.

    A DDP model caught in a reference cycle keeps the gloo backend (and its C++ threads) alive
    until interpreter finalisation, where tearing it down aborts the process ("terminate called
    without an active exception") after a run that otherwise finished; collecting now avoids that.
    """
    if created and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()


# ----------------------------------------------------------------------------- differentiable collectives


class _GatherRows(torch.autograd.Function):
    """Concatenate every rank's rows (rank order); backward: sum the gradient over ranks, keep ours."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        if grad.is_cuda:  # NCCL: reduce-scatter moves only what each rank keeps
            out = torch.empty((ctx.rows, *grad.shape[1:]), dtype=grad.dtype, device=grad.device)
            dist.reduce_scatter_tensor(out, grad)
            return out
        # gloo has no reduce-scatter for this case; an all-reduce of the (small, N x d) gradient
        # followed by taking our rows is the same sum.
        total = grad.clone()
        dist.all_reduce(total)
        start = dist.get_rank() * ctx.rows
        return total[start : start + ctx.rows]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the backward of a sum that every rank uses is again a sum over ranks."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out


def gather(x: Tensor) -> Tensor:
    """All ranks' rows of ``x`` concatenated in rank order, (P * n, ...); the identity in one process.

    Differentiable. Every rank must pass the same number of rows (the trainer gives each rank an
    equal slice of every batch). Integer tensors (e.g. sample indices) are gathered too.
    """
    if not is_distributed():
        return x
    if x.requires_grad and torch.is_grad_enabled():
        return _GatherRows.apply(x)
    with torch.no_grad():
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)


def all_reduce_sum(x: Tensor) -> Tensor:
    """Differentiable sum over ranks (the identity in one process)."""
    return _AllReduceSum.apply(x) if is_distributed() else x


# ----------------------------------------------------------------------------- sharding


def shard(batch_indices: Tensor) -> Tensor:
    """This rank's contiguous slice of a global batch; the global batch size is a multiple of P."""
    p = world_size()
    if p == 1:
        return batch_indices
    n = batch_indices.shape[0] // p
    r = rank()
    return batch_indices[r * n : (r + 1) * n]


def shard_range(n: int) -> tuple[int, int]:
    """This rank's part [lo, hi) of n items for evaluation; sizes differ by at most one."""
    p, r = world_size(), rank()
    return r * n // p, (r + 1) * n // p


def gather_rows(array: np.ndarray, total: int) -> np.ndarray:
    """Concatenate every rank's :func:`shard_range` part of an array (all ranks get the result).

    Parts may differ by one row, so each is padded to the largest before the all-gather.
    """
    if not is_distributed():
        return array
    p = world_size()
    sizes = [(r + 1) * total // p - r * total // p for r in range(p)]
    width = max(sizes)
    local = torch.from_numpy(np.ascontiguousarray(array))
    padded = torch.zeros((width, *local.shape[1:]), dtype=local.dtype)
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(p)]
    dist.all_gather(parts, padded)  # CPU tensors: the gloo backend
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)]).numpy()


# ----------------------------------------------------------------------------- agreement between ranks


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (pickled; for configs, flags, small rows)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def max_ints(values: list[int]) -> list[int]:
    """Element-wise maximum over ranks: a flag raised on any rank is seen by all at the same step."""
    if not is_distributed():
        return values
    t = torch.tensor(values, dtype=torch.int64)  # CPU: the gloo backend
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [int(v) for v in t.tolist()]


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result, or its exception, to every rank.

    Used for what only rank 0 may touch (the run directory, which other nodes may not even
    see); an error there is raised on every rank, so no rank is left waiting in a collective.
    """
    if not is_distributed():
        return fn()
    result: tuple[str, Any] = ("ok", None)
    if is_main():
        try:
            result = ("ok", fn())
        except Exception as exc:  # re-raised below, on every rank
            try:
                pickle.dumps(exc)
                result = ("error", exc)
            except Exception:
                result = ("error", RuntimeError(f"rank 0 failed: {type(exc).__name__}: {exc}"))
    kind, value = broadcast_object(result)
    if kind == "error":
        raise value
    return value


# ----------------------------------------------------------------------------- synchronised batch norm


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are taken over the global batch, on any device.

    ``torch.nn.SyncBatchNorm`` only runs on accelerators, so CPU (gloo) runs use this: the
    per-channel sums are all-reduced (differentiably, so the gradient through the statistics
    is the single-process one), in two passes for the mean and the variance as a single-process
    batch norm computes them. Outside training or in one process it is a plain batch norm, and
    its state dict has the same keys as ``BatchNorm1d/2d`` (checkpoints load either way).
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        # Processes may hold different numbers of rows (LNSCC's pair endpoints), so the count is
        # reduced too; float64 keeps it exact for large images.
        local_count = torch.tensor([xf.numel() // xf.shape[1]], dtype=torch.float64, device=xf.device)
        sums = all_reduce_sum(torch.cat([xf.sum(dims).double(), local_count]))
        count = sums[-1].detach()
        mean = (sums[:-1] / count).float()
        centred = xf - mean.view(shape)
        var = (all_reduce_sum((centred * centred).sum(dims).double()) / count).float()
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * float(count / (count - 1).clamp_min(1))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every batch norm by a synchronised one, keeping parameters and running stats.

    CUDA uses torch's fused ``SyncBatchNorm``; other devices :class:`GlobalBatchNorm`.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)  # fmt: skip
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        out.to(next(module.parameters(), torch.empty(0)).device)
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out


# ----------------------------------------------------------------------------- the DDP wrapper


class _Stepper(nn.Module):
    """DDP hooks into ``forward``; methods expose ``training_step``, so this forwards to it."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: Any) -> Any:
        return self.method.training_step(batch)


def wrap(method: nn.Module, device: torch.device, sync_bn: bool = True) -> Callable[[Any], Any]:
    """The step function of a method: ``method.training_step`` in one process, DDP around it otherwise.

    Call before building the optimizer (SyncBN conversion replaces the batch-norm modules).
    Checkpoints keep saving ``method.state_dict()`` (the unwrapped module), so a DDP run resumes
    on one process and vice versa. Buffers are not broadcast each step when batch norm is
    synchronised: every rank then updates them identically (running stats from global statistics,
    method buffers from gathered rows). Without SyncBN, DDP's usual rank-0 broadcast keeps them equal.
    A method whose step leaves some parameters unused sets ``ddp_find_unused_parameters = True``.
    """
    if not is_distributed():
        return method.training_step
    if sync_bn:
        convert_sync_batchnorm(method, device)
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # torch >= 2.14 renamed the per-forward buffer broadcast (and warns on the old name); the
    # initial sync from rank 0 happens either way, which is what we want.
    sync_name = "forward_sync_buffers"
    if sync_name not in inspect.signature(DistributedDataParallel.__init__).parameters:
        sync_name = "broadcast_buffers"
    ddp = DistributedDataParallel(
        _Stepper(method),
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=bool(getattr(method, "ddp_find_unused_parameters", False)),
        **{sync_name: not sync_bn},
    )
    return ddp
