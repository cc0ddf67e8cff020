"""Data-parallel training across the processes that `torchrun` starts: one per GPU, or several on CPUs.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process it starts; `start_team()` reads them and
joins PyTorch's process group (NCCL when the processes train on GPUs, Gloo on CPUs). Without them, or with
a world of one, there is no group and no `Team`: training runs exactly as in a plain single process.

Inside a team, rank 0 (the "main" process) alone scans the folder, prints, holds the run-folder lock and
writes models and checkpoints; the others receive what it found through `from_main`, which also relays a
failure so that every process stops with a message instead of waiting. Every collective has a timeout,
and torchrun ends the whole group when one process exits with an error, so nobody waits forever.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from cardinal.engine.errors import Cancelled, CardinalError
from cardinal.engine.progress import CancelToken

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
TIMEOUT_VARIABLE = "CARDINAL_DISTRIBUTED_TIMEOUT"  # seconds one process waits for the others at a meeting point
DEFAULT_TIMEOUT_S = 1800.0  # rank 0 scans the folder while the others wait: allow for a large folder
Value = TypeVar("Value")


class OtherProcessFailed(CardinalError):
    """Another process of the same torchrun job stopped with an error; this one stops with it."""


def launched_by_torchrun(environ: dict[str, str] | None = None) -> bool:
    """Whether this process was started by torchrun as one of several (RANK, WORLD_SIZE, LOCAL_RANK set)."""
    environ = os.environ if environ is None else environ
    if not all(name in environ for name in TORCHRUN_VARIABLES):
        return False
    try:
        return int(environ["WORLD_SIZE"]) > 1
    except ValueError:
        return False


@dataclass(frozen=True)
class Team:
    """This process's place among the processes training one model together."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints and writes."""
        return self.rank == 0

    # --- what rank 0 does for everyone ------------------------------------------------------------------
    def from_main(self, action: Callable[[], Value]) -> Value:
        """Run `action` on rank 0 and hand its result to every rank; if it fails, every rank stops."""
        outcome: list[Any] = [None]
        failure: BaseException | None = None
        if self.is_main:
            try:
                outcome[0] = ("ok", action())
            except BaseException as error:  # relayed, then raised again here unchanged
                failure = error
                outcome[0] = ("cancelled" if isinstance(error, Cancelled | KeyboardInterrupt) else "error",
                              str(error) or type(error).__name__)
        torch.distributed.broadcast_object_list(outcome, src=0, device=self._object_device())
        if failure is not None:
            raise failure
        kind, value = outcome[0]
        if kind == "ok":
            return value
        if kind == "cancelled":
            raise Cancelled(value)
        raise OtherProcessFailed(f"process {self.rank} of {self.world_size} stopped because process 0 failed: "
                                 f"{value}")

    def main_first(self, action: Callable[[], Value]) -> Value:
        """Run `action` on rank 0 first (a download, say), then on the others once it has succeeded."""
        result: list[Value] = []
        self.from_main(lambda: result.append(action()))  # only success or failure travels, not the result
        return result[0] if self.is_main else action()

    @contextlib.contextmanager
    def main_only(self, enter: Callable[[], contextlib.AbstractContextManager[Value]]) -> Iterator[Value | None]:
        """Enter the context `enter()` makes on rank 0 only (the run-folder lock); the others get None.

        Whether rank 0 got in is shared, so a refused lock stops every process with rank 0's reason.
        """
        with contextlib.ExitStack() as stack:
            entered: list[Value] = []
            self.from_main(lambda: entered.append(stack.enter_context(enter())))
            yield entered[0] if self.is_main else None

    def require_same(self, settings: Mapping[str, object]) -> None:
        """Stop every process at once, naming what differs, unless every rank has the same `settings` (the flags
        that must agree: with another epoch count or batch size one process would wait for another at a meeting
        point until the timeout). A meeting point itself: every rank calls it once, before any work."""
        everyone = self.gather(dict(settings))
        differences = []
        for key, value in everyone[0].items():
            other = next((rank for rank, theirs in enumerate(everyone) if theirs.get(key) != value), None)
            if other is not None:
                differences.append(f"{key} {_shown(value)} in process 0 but {_shown(everyone[other].get(key))} in "
                                   f"process {other}")
        if differences:
            raise CardinalError(f"the {self.world_size} processes were started with different settings: "
                                + "; ".join(differences) + "; start every process with the same command line")

    # --- meeting points inside the loop -------------------------------------------------------------------
    def sum(self, *values: float) -> tuple[float, ...]:
        """Each value summed over every rank (losses, correct answers, image counts)."""
        totals = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(totals)
        return tuple(totals.tolist())

    def agree(self, loss: torch.Tensor, cancel: AgreedCancel | None) -> bool:
        """One step's verdict shared by every rank: whether every loss is finite, and whether anyone asked
        to stop (then `cancel` turns on everywhere at the same step, so no rank waits on one that left)."""
        flags = torch.stack([(~torch.isfinite(loss.detach())).any().to(torch.float32),
                             torch.tensor(float(cancel is not None and cancel.asked), device=loss.device)])
        flags = flags.to(self.device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        non_finite, stop = flags.tolist()
        if stop and cancel is not None:
            cancel.cancel()
        return not non_finite

    def gather(self, value: Value) -> list[Value]:
        """Every rank's `value`, in rank order, on every rank."""
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def shard(self, items: Sequence[Value]) -> Sequence[Value]:
        """This rank's share of `items` (every world_size-th, from its rank); `unshard` puts shares back."""
        return items[self.rank :: self.world_size]

    def unshard(self, shares: Sequence[torch.Tensor]) -> torch.Tensor:
        """The rows of every rank's `shard`, back in their original order."""
        total = sum(len(share) for share in shares)
        whole = shares[0].new_empty((total, *shares[0].shape[1:]))
        for rank, share in enumerate(shares):
            whole[rank :: self.world_size] = share.to(whole.device)
        return whole

    def shard_order(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's part of an epoch's shuffled `order`, every rank the same length (as
        DistributedSampler does: when the count does not divide, the first few are repeated)."""
        padding = -len(order) % self.world_size
        if padding:
            order = torch.cat([order, order[:padding]])
        return order[self.rank :: self.world_size]

    def wrap(self, module: nn.Module, *, find_unused: bool = False) -> nn.Module:
        """`module` under DistributedDataParallel: gradients are averaged over the ranks at each step
        (`find_unused`: some parameters get no gradient for a while, e.g. while the head trains alone)."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=find_unused)

    def agreed_cancel(self, token: CancelToken | None) -> AgreedCancel:
        """A token the training loop can check anywhere: it turns on only at a step every rank agreed on."""
        return AgreedCancel(token)

    def close(self) -> None:
        """Leave the process group (at the end of the command)."""
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def _object_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")


def _shown(value: object) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


class AgreedCancel(CancelToken):
    """The training loop's view of a `CancelToken` in a team: `asked` is this process's own request (Ctrl-C),
    `cancelled` turns on only when `Team.agree` has shared it with every rank."""

    def __init__(self, local: CancelToken | None) -> None:
        super().__init__()
        self.local = local

    @property
    def asked(self) -> bool:
        return self.local is not None and self.local.cancelled


def start_team(device: str = "auto") -> Team | None:
    """Join torchrun's process group when this process is one of several it started; else None.

    `device` is the command line's choice: 'auto' or 'cuda' train on this process's GPU (its local rank)
    when CUDA is available, 'cpu' on the CPU; one GPU per process is torchrun's model, so 'cuda:N' is refused.
    """
    if not launched_by_torchrun():
        return None
    rank, world_size, local_rank = (int(os.environ[name]) for name in TORCHRUN_VARIABLES)
    if device not in ("auto", "cpu", "cuda"):
        raise CardinalError(f"under torchrun each process trains on the GPU of its local rank; use --device "
                            f"auto, cuda or cpu, not '{device}'")
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not use_cuda:
        raise CardinalError("CUDA was requested but no CUDA GPU is available; use --device cpu")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise CardinalError(f"process {rank} (local rank {local_rank}) has no GPU: this machine has "
                                f"{torch.cuda.device_count()}; start at most that many per machine "
                                "(--nproc-per-node)")
        torch_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_S)))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend, timeout=timeout,
                                             device_id=torch_device if use_cuda else None)
    return Team(rank, world_size, local_rank, torch_device, backend)


class ShardRecord:
    """Which training images each rank's model saw: counts for every epoch, the indices (into the training
    split) for the latest one. Rank 0 writes it beside the models as `distributed.json`."""

    def __init__(self, team: Team) -> None:
        self.team = team
        self.epochs: list[dict[str, Any]] = []

    def add(self, epoch: int, indices: list[int]) -> None:
        """Share this rank's epoch with every rank (a meeting point: every rank calls it once per epoch)."""
        share = {"rank": self.team.rank, "host": socket.gethostname(), "images": len(indices), "indices": indices}
        shares = self.team.gather(share)
        for earlier in self.epochs:
            for entry in earlier["ranks"]:
                entry.pop("indices", None)
        self.epochs.append({"epoch": epoch, "ranks": shares})

    def write(self, folder: Path) -> Path | None:
        """Rank 0 writes the record atomically; the other ranks write nothing."""
        from cardinal.engine.durable import atomic_write
        from cardinal.engine.runs.layout import RunPaths

        if not self.team.is_main:
            return None
        record = {"world_size": self.team.world_size, "backend": self.team.backend,
                  "device_type": self.team.device.type, "epochs": self.epochs}
        text = json.dumps(record, indent=1).encode()
        return atomic_write(RunPaths(folder).distributed_record, lambda out: out.write(text))
