"""Multi-process training on PyTorch's own engine: process group from torchrun's env, DDP over LoRA only.

`torchrun --nproc_per_node=N` and `accelerate launch` both set RANK, WORLD_SIZE and LOCAL_RANK; when
they are absent (or WORLD_SIZE is 1) everything here is a no-op and training is the plain
single-process loop. On GPUs each rank binds to cuda:LOCAL_RANK before anything touches CUDA
(the 4-bit loader, the Triton kernels and the offload streams all follow the current device), and
talks NCCL; on the CPU it talks gloo.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


class WorldSizeError(ValueError):
    """The number of processes does not divide the step's micro-batches."""


def check_world_size(grad_accum_steps: int, world_size: int) -> None:
    if grad_accum_steps % world_size:
        raise WorldSizeError(
            f"grad_accum_steps={grad_accum_steps} is not a multiple of the {world_size} processes: each optimizer "
            f"step's micro-batches are shared out evenly, so set grad_accum_steps to a multiple of {world_size} "
            "(it counts micro-batches of the whole step, over all GPUs)")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job; the single-process default is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Read the launcher's variables (torchrun, accelerate launch, or any env:// launcher)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=int(os.environ["RANK"]), world_size=world,
                    local_rank=int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


def current() -> DistInfo:
    """The running process group's view (single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=env_info().local_rank)
    return DistInfo()


def init_from_env(timeout_s: float = 1800.0) -> tuple[DistInfo, bool]:
    """Join the process group the launcher describes; returns (info, whether this call created it).

    NCCL with device cuda:LOCAL_RANK when CUDA is available, gloo otherwise. Idempotent: a group that
    already exists (e.g. created by accelerate) is reused and left for its owner to destroy.
    """
    info = env_info()
    if not info.enabled:
        return info, False
    if dist.is_initialized():
        return current(), False
    kwargs: dict[str, Any] = {"timeout": timedelta(seconds=timeout_s)}
    if torch.cuda.is_available():
        if info.local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK={info.local_rank} but only {torch.cuda.device_count()} GPUs are visible")
        torch.cuda.set_device(info.local_rank)
        kwargs["backend"] = "nccl"
        kwargs["device_id"] = torch.device("cuda", info.local_rank)
    else:
        kwargs["backend"] = "gloo"
    dist.init_process_group(**kwargs)
    return current(), True


def shutdown(created: bool, clean: bool = True) -> None:
    """Leave the group this process created. After an error (clean=False) skip the barrier: the other
    ranks may be waiting in a collective, and this process exiting is what lets the launcher stop them."""
    if created and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a no-op for one process), on the device the backend needs (NCCL: the GPU);
    returns a tensor on `t`'s device."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return t
    comm = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    buf = t.to(comm)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device)


def all_gather_objects(obj: Any) -> list[Any]:
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DDP over the trainable parameters only: DDP registers just those with requires_grad, so the
    frozen 4-bit base is never broadcast or all-reduced. Every LoRA weight gets a gradient on every
    micro-batch, so no unused-parameter search is needed (find_unused_parameters=False)."""
    from torch.nn.parallel import DistributedDataParallel

    device = next(p for p in model.parameters() if p.requires_grad).device
    ids = [device.index if device.index is not None else info.local_rank] if device.type == "cuda" else None
    # Frozen weights and buffers are identical on every rank (same files, same seed): keep DDP from
    # broadcasting them at construction (the whole 4-bit base) or syncing buffers every forward.
    # (state_dict keys, because DDP's initial sync walks the state dict, which for bitsandbytes 4-bit
    # layers also holds packed quantization states.)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        model, [k for k in model.state_dict(keep_vars=True) if k not in trainable])
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def no_sync(model: torch.nn.Module, skip: bool) -> contextlib.AbstractContextManager[Any]:
    """DDP's no_sync() for non-final micro-batches of an accumulated step; a null context otherwise."""
    from torch.nn.parallel import DistributedDataParallel

    if skip and isinstance(model, DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. writes a file), the others after it; one process: just runs."""
    info = current()
    if not info.is_main:
        barrier()
    yield
    if info.is_main:
        barrier()
