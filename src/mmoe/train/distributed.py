"""Data-parallel helpers (torch DDP). The only module that imports ``torch.distributed``.

Launched by ``torchrun --nproc_per_node=N -m mmoe ...``, every rank holds the same model and
the same epoch order; each global batch is split into N contiguous shards, one per rank.
Gradients are averaged by DDP, and each rank's loss is normalised by the *global* batch's
label mass (one all-reduce of T numbers per step), so N processes take exactly the steps a
single process takes with the same global batch. Evaluation gathers every rank's
predictions, drops the padding and computes the metrics on all rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .. import _checks


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: its rank, the world size and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and figures."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def env_rank() -> int:
    """This process's rank as torchrun announces it (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def env_world() -> int:
    """The number of processes torchrun launched (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def pick_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` fails clearly without a GPU."""
    _checks.one_of(device, ("auto", "cpu", "cuda"), "device")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    _checks.check(torch.cuda.is_available(), "--device cuda was asked for but no CUDA GPU is "
                  "visible; use --device cpu or auto")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def setup(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), else run alone.

    gloo on CPU, NCCL on GPU. Safe to call more than once.
    """
    world = env_world()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world <= 1:
        return DistContext(0, 1, dev)
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), dev)


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """The module to run forward/backward through: DDP across ranks, else the model itself.
    DDP leaves the lookup tables (``model.sparse_parameters()``: sparse gradients, which its
    buckets cannot hold) to :func:`sync_sparse_grads`."""
    if not ctx.distributed:
        return model
    tables = {id(p) for p in getattr(model, "sparse_parameters", list)()}
    ignored = [name for name, p in model.named_parameters() if id(p) in tables]
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        model, ignored)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sync_sparse_grads(params: list[nn.Parameter], ctx: DistContext) -> None:
    """Average the tables' sparse gradients over ranks, as DDP averages the dense ones: each
    rank's rows are gathered and summed (a sparse all-reduce), then divided by the world
    size; a no-op alone."""
    if not ctx.distributed:
        return
    for p in params:
        grad = p.grad if p.grad is not None else torch.sparse_coo_tensor(
            torch.zeros(1, 0, dtype=torch.long, device=p.device),
            p.new_zeros(0, *p.shape[1:]), p.shape)
        grad = grad.coalesce()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        p.grad = grad.coalesce() / ctx.world


def average_grads(params: list[nn.Parameter], ctx: DistContext) -> None:
    """Average the dense gradients of parameters outside DDP's model (a loss weighting's
    learnt task weights, whose gradients come from each rank's own losses) over ranks, as
    DDP does the model's; a no-op alone."""
    if not ctx.distributed:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(ctx.world)


def to_device(tensors: tuple[torch.Tensor | None, ...], ctx: DistContext
              ) -> tuple[torch.Tensor | None, ...]:
    """Move a tuple of optional tensors to the context's device (those there already stay)."""
    return tuple(t if t is None or t.device == ctx.device
                 else t.to(ctx.device, non_blocking=True) for t in tensors)


def shard(start: int, stop: int, ctx: DistContext) -> slice:
    """This rank's contiguous part of rows [start, stop) (sizes differ by at most one)."""
    n = stop - start
    lo = start + (n * ctx.rank) // ctx.world
    hi = start + (n * (ctx.rank + 1)) // ctx.world
    return slice(lo, hi)


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``t`` over ranks (in place) and return it; a no-op alone."""
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_rows(local: torch.Tensor, total: int, ctx: DistContext) -> torch.Tensor:
    """Concatenate every rank's rows in rank order; shards are padded to one size for the
    collective and the padding is dropped, so exactly ``total`` rows come back."""
    if not ctx.distributed:
        return local
    size = -(-total // ctx.world)  # ceil
    padded = torch.zeros((size, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(ctx.world)]
    dist.all_gather(parts, padded)
    sizes = [shard(0, total, DistContext(r, ctx.world)).stop
             - shard(0, total, DistContext(r, ctx.world)).start for r in range(ctx.world)]
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (e.g. until rank 0 has written a checkpoint)."""
    if ctx.distributed:
        dist.barrier()
