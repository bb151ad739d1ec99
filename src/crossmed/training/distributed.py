"""Several training processes with torchrun and DistributedDataParallel: ranks, launch, and gathering results.

`train.strategy=ddp` makes the train stage start itself again under `torch.distributed.run`
(`train.ddp.nproc_per_node` processes on this machine); when torchrun already started it (several
machines: run torchrun yourself), the ranks come from its environment variables.
"""

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from crossmed.errors import ConfigError

log = logging.getLogger("crossmed.train")
STRATEGIES = ("single", "ddp", "federated")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the training processes."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        """True for the process that logs, tracks and writes files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def current_ranks() -> Ranks:
    """Return the ranks torchrun gave this process (rank 0 of 1 when it was not started by torchrun)."""
    return Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


def started_by_torchrun() -> bool:
    """True when this process is one of torchrun's workers."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def check_strategy(train_cfg) -> str:
    """Return train.strategy, or raise ConfigError when it is not one of STRATEGIES."""
    strategy = str(train_cfg.get("strategy", "single"))
    if strategy not in STRATEGIES:
        raise ConfigError("train.strategy", f"unknown strategy '{strategy}' (known: {', '.join(STRATEGIES)})")
    return strategy


def needs_launch(train_cfg) -> bool:
    """True when train.strategy=ddp asks for processes that torchrun has not started yet."""
    return check_strategy(train_cfg) == "ddp" and not started_by_torchrun()


def processes_per_node(train_cfg) -> int:
    """Return train.ddp.nproc_per_node: 'auto' is the GPU count when CUDA is used, 2 CPU processes otherwise."""
    wanted = train_cfg.ddp.nproc_per_node
    if wanted == "auto":
        uses_cuda = str(train_cfg.device) != "cpu" and torch.cuda.is_available()
        return torch.cuda.device_count() if uses_cuda else 2
    if not isinstance(wanted, int) or wanted < 1:
        raise ConfigError("train.ddp.nproc_per_node", f"'{wanted}' is not a positive number of processes or 'auto'")
    return wanted


def launch(train_cfg, target: list[str]) -> int:
    """Run `target` (a script and its arguments, or '-m', module, arguments) under torchrun; return its exit code."""
    nproc = processes_per_node(train_cfg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *target]
    log.info("train.strategy=ddp: starting %d processes with torchrun: %s", nproc, " ".join(command[1:]))
    process = subprocess.Popen(command)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # stopping the stage stops the ranks
    try:
        return process.wait()
    except BaseException:
        process.terminate()  # torchrun passes SIGTERM on to its workers
        process.wait(timeout=120)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def start(ranks: Ranks, device: torch.device, backend: str = "auto") -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU unless train.ddp.backend says) and return this rank's device."""
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    chosen = ("nccl" if device.type == "cuda" else "gloo") if backend == "auto" else backend
    dist.init_process_group(chosen, rank=ranks.rank, world_size=ranks.world_size)
    if not ranks.main:  # only rank 0 reports progress; the others speak up for warnings and errors
        logging.getLogger("crossmed").setLevel(logging.WARNING)
    log.info("process group: %d processes, backend %s, rank 0 on %s", ranks.world_size, chosen, device)
    return device


def stop() -> None:
    """Leave the process group once every rank has arrived."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(net: torch.nn.Module, device: torch.device, sync_batchnorm: bool) -> torch.nn.Module:
    """Return `net` in DistributedDataParallel (with SyncBatchNorm on CUDA when asked); unchanged outside a process group.

    A process group of one (torchrun --nproc_per_node=1) is wrapped too: the same code path as many GPUs, with nothing to average.
    """
    if not dist.is_initialized():
        return net
    if sync_batchnorm and device.type == "cuda":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def shard(count: int, ranks: Ranks) -> tuple[int, int]:
    """Return this rank's [start, stop) of `count` items split into contiguous, near-equal parts."""
    return count * ranks.rank // ranks.world_size, count * (ranks.rank + 1) // ranks.world_size


def sum_over_ranks(*values: float) -> list[float]:
    """Return each value summed over all ranks (the values themselves outside a process group)."""
    if not dist.is_initialized():
        return list(values)
    total = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total)
    return total.tolist()


def _collective_device() -> torch.device:
    """Return where a tensor for a collective must live: NCCL reduces only CUDA tensors (this rank's GPU), gloo CPU ones."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_objects(value) -> list:
    """Return every rank's `value`, in rank order ([value] outside a process group)."""
    if not dist.is_initialized():
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def gather_rows(rows: np.ndarray) -> np.ndarray:
    """Return the rows every rank computed for its shard, concatenated in rank order (the shards' order)."""
    return np.concatenate(gather_objects(rows)) if dist.is_initialized() else rows
