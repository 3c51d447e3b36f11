"""Where a run trains: one process, or data-parallel over N processes with Lightning's DDP.

Why: the data-parallel reproductions need one run spread over several devices without changing what
the recipe means. `batch_size` stays the GLOBAL batch; each of the N ranks trains on batch_size / N
examples of every step (the loaders shard each epoch's shuffle as DistributedSampler(drop_last=True)
does, interleaved, see harness.data.order) and DDP averages the gradients, so N processes take the
step one process takes at the full batch, up to the order of float reductions. Validation and test
are scored on the full sets on every rank, so every rank sees the same curve and stops at the same
step. On CPU the ranks talk over gloo, on CUDA over NCCL.

Processes: `launch` starts them once per command, before its first job. With Lightning's subprocess
launcher (Fabric.launch) the other N - 1 processes re-run the same command line (sys.argv) with
LOCAL_RANK set, so every rank goes through the same job pipeline in the same order; processes
started by torchrun, or by hand with MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK and LOCAL_RANK set,
only join. The process group then lives for the whole command and every job's Trainer reuses it.

Only rank 0 writes (MLflow, results tables, progress lines, the run store). The other ranks have no
tracker, so they cannot look up which jobs are already recorded: rank 0 decides and `agree` hands
its decision (and a reused outcome) to the others, so that no rank trains a job the others skip.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

__all__ = ["agree", "check_batch", "check_devices", "global_rank", "is_rank_zero", "launch", "per_rank_batch",
           "trainer_args"]

_CONTROL: list[Any] = []  # the group `agree` broadcasts over (a gloo group when the training backend is NCCL)


def check_devices(devices: int, executor: str = "inprocess") -> None:
    """Refuse a device count that is not a positive integer, or DDP under a parallel executor.

    A job of N processes owns the machine's devices; executors that run jobs side by side would
    start several DDP groups on the same devices (and each worker would re-launch the command).
    """
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ValueError(f"--devices {devices!r}: expected a positive number of processes")
    if devices > 1 and executor != "inprocess":
        raise ValueError(f"--devices {devices} trains each job over {devices} processes; it needs executor "
                         f"'inprocess', not '{executor}'")


def check_batch(batch_size: int, devices: int, what: str = "recipe") -> None:
    """Refuse a global batch that N processes cannot share equally."""
    if batch_size % devices:
        raise ValueError(f"{what}: batch_size {batch_size} is not divisible by --devices {devices} "
                         f"(each process trains on an equal share of the global batch)")


def per_rank_batch(batch_size: int, devices: int) -> int:
    """Examples one rank trains on per step: its share of the global batch."""
    check_batch(batch_size, devices)
    return batch_size // devices


def global_rank(devices: int = 1) -> int:
    """This process's rank: from the process group once it exists, else from the launcher's variables.

    torchrun sets RANK; Lightning's launcher sets NODE_RANK and LOCAL_RANK (global = node * N + local).
    A process that has launched nothing (yet) is rank 0.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    return int(os.environ.get("NODE_RANK", 0)) * devices + int(os.environ.get("LOCAL_RANK", 0))


def is_rank_zero(devices: int = 1) -> bool:
    """Whether this process is the one that writes: always with one device, rank 0 with more."""
    return devices == 1 or global_rank(devices) == 0


def _accelerator(accelerator: str) -> tuple[str, str]:
    """(accelerator, process-group backend) for DDP; "auto" is CUDA when present, else CPU."""
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator not in ("cpu", "cuda", "gpu"):
        raise ValueError(f"accelerator '{accelerator}': data-parallel training runs on 'cpu' or 'cuda'")
    return accelerator, "gloo" if accelerator == "cpu" else "nccl"


def launch(devices: int, accelerator: str = "auto") -> int:
    """Make this command one of `devices` ranks (spawning the others if nobody did); return its rank.

    A no-op returning 0 for one device, and the rank for a process group that already exists.
    """
    if devices == 1:
        return 0
    if not torch.distributed.is_initialized():
        from lightning.fabric import Fabric
        from lightning.fabric.strategies import DDPStrategy

        accelerator, backend = _accelerator(accelerator)
        # Fabric's start-up banner and "Initializing distributed" lines, as the Runner quiets Lightning's chatter
        # (the banner goes through whichever package's rank-zero logger was imported last).
        for name in ("lightning.fabric", "lightning.pytorch"):
            logging.getLogger(name).setLevel(logging.WARNING)
        Fabric(accelerator=accelerator, devices=devices, strategy=DDPStrategy(process_group_backend=backend)).launch()
        _CONTROL[:] = [torch.distributed.new_group(backend="gloo") if backend != "gloo" else None]
    return torch.distributed.get_rank()


def agree(value: Any) -> Any:
    """Rank 0's `value` on every rank (pickled, over the process group); `value` itself without one."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0, group=_CONTROL[0] if _CONTROL else None)
    return box[0]


def trainer_args(devices: int, accelerator: str = "auto") -> dict[str, Any]:
    """`pl.Trainer` arguments for one process, or DDP over `devices` processes."""
    if devices == 1:
        return {"accelerator": accelerator, "devices": 1}
    from lightning.pytorch.strategies import DDPStrategy

    accelerator, backend = _accelerator(accelerator)
    return {"accelerator": accelerator, "devices": devices, "strategy": DDPStrategy(process_group_backend=backend)}
