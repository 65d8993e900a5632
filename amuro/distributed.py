"""Data-parallel fine-tuning over the GPUs of one job, launched by torchrun.

One process per GPU. The configured batch size stays the global batch: every optimizer step
splits it across the processes, and the loss is normalised by the token count of the whole
global batch, so N processes take the same steps as one (up to the order of float sums).
`ddp` keeps a full copy of the model per GPU; `fsdp` (FSDP2, `fully_shard`) shards parameters,
gradients and optimizer state across them for models that do not fit one GPU. On CPU the same
code runs with the gloo backend, which is how the tests check it.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> str:
        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"


def launched_ranks() -> Dist:
    """The process's place in a torchrun launch (world 1 when run directly)."""
    return Dist(int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)),
                int(os.environ.get("LOCAL_RANK", 0)))


def relaunch_under_torchrun(processes: int, module: str, argv: list[str]) -> None:
    """Replace this process by `torchrun --nproc_per_node=N -m module argv` (one node)."""
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable),
                                                        "torchrun")
    os.execv(torchrun, [torchrun, "--standalone", f"--nproc_per_node={processes}",
                        "-m", module, *argv])


def start(d: Dist) -> None:
    if d.world > 1:
        if torch.cuda.is_available():
            torch.cuda.set_device(d.local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def stop(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model, d: Dist, strategy: str):
    """The model as trained: itself on one process, DDP or FSDP2 across several."""
    if d.world == 1:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [d.local_rank] if torch.cuda.is_available() else None
        return DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import fully_shard

    # Shard each transformer block on its own (so only one block is gathered at a time), then
    # the rest (embeddings, head) at the root. Blocks are the classes the model declares it
    # must not split across devices (`_no_split_modules`).
    block_names = set(getattr(model, "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in block_names:
            fully_shard(module)
    fully_shard(model)
    return model


def shard(batch: list, d: Dist) -> list:
    """This process's share of a global batch (strided, so shares differ by at most one)."""
    return batch[d.rank:: d.world]


def total(value: float, d: Dist) -> float:
    """Sum of a number over the processes (the global token count, a stop request)."""
    if d.world == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return float(t.item())


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def any_of(flags: list[bool], d: Dist) -> list[bool]:
    """Each flag true on any process (so every process saves or stops at the same step)."""
    if d.world == 1:
        return [bool(f) for f in flags]
    t = torch.tensor([float(f) for f in flags], device=_collective_device())
    dist.all_reduce(t)
    return [bool(v > 0) for v in t.tolist()]


def broadcast_path(path, d: Dist):
    """The main process's answer (a path or None) on every process."""
    if d.world == 1:
        return path
    box = [path]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _collective_device() -> str:
    # NCCL exchanges only CUDA tensors; gloo only CPU ones.
    return "cuda" if torch.cuda.is_available() else "cpu"
