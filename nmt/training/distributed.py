"""torchrun + DistributedDataParallel helpers (a no-op layer when there is one process).

Under ``torchrun`` every rank runs the whole program. Rank 0 alone writes files; ranks agree on every decision
(stop, skip, run directory) by reducing or broadcasting it, never by each deciding alone.
One process group serves both devices (``cpu:gloo,cuda:nccl`` when CUDA is present): small bookkeeping tensors
stay on the CPU and travel over gloo, gradients on GPUs over NCCL.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> DistInfo:
    """Join the process group described by torchrun's environment (once; later calls return the same info)."""
    if not launched_by_torchrun():
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=60))
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shared_start_time() -> float:
    """Rank 0's clock, the same float on every rank (the run directory's time stamp must not differ by rank)."""
    now = torch.tensor([time.time()], dtype=torch.float64)
    if dist.is_initialized():
        dist.broadcast(now, src=0)
    return float(now.item())


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a small tensor over ranks (in place; gloo for a CPU tensor, NCCL for a CUDA one); returns it."""
    if dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (small objects only: loader and RNG states)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer, in state-dict order (ranks must agree bit for bit)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
