"""Data-parallel training over the processes that `torchrun` starts (DistributedDataParallel).

`torchrun --nproc_per_node=N -m recdistill train ...` starts N processes with the same arguments;
WORLD_SIZE, RANK and LOCAL_RANK in their environment say which is which. Without them (or with
WORLD_SIZE=1) no process group is created, nothing is wrapped, and every helper here is the identity
(`share(x)` is x, `barrier()` does nothing), so the single-process path is the code it always was.

With N > 1 processes, one model is trained by all of them:
- every rank builds the same seeded global batch and trains on its share of the rows (`slice_batch`; a
  ranking user's rows stay together on one rank), so the batches, and hence the results, do not depend
  on N beyond float rounding;
- a rank's loss is weighted by its share of the global batch's targets (times N, which DDP's gradient
  averaging divides out), so the summed gradient is that of the global batch's mean (or sum);
- rank 0 alone validates, writes files and decides; what the others need (validation metrics,
  whether a cache entry is usable, the final metrics) is broadcast from it (`share`).
The process group is gloo for CPU tensors and, where CUDA and NCCL are present, NCCL for CUDA tensors
(one group, "cpu:gloo,cuda:nccl"), so `device=cpu` and `device=auto` both work on a GPU machine.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")

#: How long a rank waits for the others at a collective. Rank 0 alone waits for a cache lock held by
#: another job, extracts and evaluates while the others wait, which can take hours on a large dataset;
#: a rank that crashes ends the whole job through torchrun anyway.
TIMEOUT = timedelta(hours=24)


def world_size() -> int:
    """Processes training together (torchrun's WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    """Whether this process is one of several started by torchrun."""
    return world_size() > 1


def rank() -> int:
    """This process's rank among them (0 without torchrun)."""
    return int(os.environ.get("RANK", "0")) if active() else 0


def local_rank() -> int | None:
    """This process's rank on its machine (the GPU it takes), None without torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else None


def is_main() -> bool:
    """Rank 0: the process that validates, decides and alone writes the run folder and the caches."""
    return rank() == 0


def init() -> None:
    """Join torchrun's process group (idempotent; nothing without torchrun)."""
    if not active() or dist.is_initialized():
        return
    cuda = torch.cuda.is_available() and dist.is_nccl_available()
    if cuda and (local_rank() or 0) < torch.cuda.device_count():
        torch.cuda.set_device(local_rank() or 0)  # NCCL's communicators use the current device
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=TIMEOUT)


def close() -> None:
    """Leave the process group, if this process joined one (after a failure: see `leave` for a success)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave() -> NoReturn:
    """End this process after a successful run under torchrun: once every rank is here, flush the logs and
    the standard streams and exit 0 at once (os._exit), without tearing the process group down.

    Tearing gloo's group down, by destroy_process_group or by the interpreter's finalisation, aborted rank 0
    ("terminate called without an active exception", SIGABRT) after every file of the run was written, in
    about one run in 12 to 36 of the test job under torch 2.13 on the CPU; torchrun then reports the run
    failed. Nothing a finished run holds needs a destructor: the trackers are closed and the files written
    atomically, so exiting without running any is safe, and the exit status is the run's."""
    barrier()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def share(value: T) -> T:
    """Rank 0's `value` on every rank (the others' is ignored); `value` itself without torchrun."""
    if not active():
        return value
    init()
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every rank is here (nothing without torchrun)."""
    if active():
        init()
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (making and writing what it loads or computes); the other ranks
    run it after, when they find rank 0's results (cached splits, saved knowledge) and only read them."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


@contextmanager
def writable(folder: Path) -> Iterator[Path]:
    """`folder` on rank 0; on the other ranks a temporary folder, removed after the block, for code that
    writes run-folder files as a side effect (only rank 0 writes the run folder)."""
    if is_main():
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix=f"recdistill-rank{rank()}-") as scratch:
        yield Path(scratch)


def sum_across(values: dict[str, float]) -> dict[str, float]:
    """Each value summed over the ranks (every rank passes the same keys); `values` without torchrun."""
    if not active():
        return values
    init()
    names = sorted(values)
    total = torch.tensor([values[name] for name in names], dtype=torch.float64)
    dist.all_reduce(total)
    return dict(zip(names, total.tolist()))


def rank_seed(seed: int, epoch: int) -> int:
    """The global RNG seed of this rank's training batches in `epoch`: distinct per rank (dropout masks
    differ between ranks' rows) and a function of (seed, epoch, rank) alone, so a resumed run repeats it."""
    return ((seed * 100_003 + epoch) * 65_537 + rank() + 1) % (2 ** 63)


class _Step(nn.Module):
    """Model and objective as one module, so DDP sees every parameter the loss reaches: the model's,
    also those only `model.loss` reads (a BPR model's item factors), and the strategies' learnable parts."""

    def __init__(self, model: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        output = self.model(batch)
        return self.objective(self.model.loss(batch, output), output, batch)


def data_parallel(model: nn.Module, objective: nn.Module, device: torch.device) -> nn.Module:
    """`step(batch) -> terms` over model and objective whose gradients DDP averages over the ranks.

    Buffers are not broadcast at each step (they are the same on every rank: the strategies' teacher
    tables are large); parameters that a step does not reach are allowed (find_unused_parameters)."""
    init()
    # torch 2.13 renamed broadcast_buffers to forward_sync_buffers (which still syncs once, at the start)
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_PARAMETERS
               else {"broadcast_buffers": False})
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(_Step(model, objective), device_ids=device_ids, find_unused_parameters=True,
                                   **no_sync)


_DDP_PARAMETERS = frozenset(inspect.signature(DistributedDataParallel.__init__).parameters)


def _row_targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,) targets in each row of a training batch, by the layouts of the model contracts: rating rows of
    slots (`seq_target`, recdistill/models/base.py), ranking sequences (`target` > 0) or pairs (one per row,
    recdistill/models/ranking_base.py)."""
    if "seq_target" in batch:
        return batch["seq_target"].sum(1)
    if "target" in batch:
        return (batch["target"] > 0).flatten(1).sum(1)
    return torch.ones(len(batch["user"]), dtype=torch.long, device=batch["user"].device)


def slice_batch(batch: dict[str, torch.Tensor], part: int | None = None, parts: int | None = None
                ) -> tuple[dict[str, torch.Tensor], int]:
    """This rank's share of a global training batch (`part` of `parts`, default this rank of all), and the
    number of targets it holds. A slice may hold no targets.

    Rating batches (rows of slots, `seq_target`): rows [part * B // parts, (part + 1) * B // parts); their
    `seq_*` tensors are per row, the others per target (flattened row-major). Ranking batches: the rows
    of the users whose first row (in user order) falls in that range, in batch order, so a user's rows stay
    on one rank (strategies sum over a batch's distinct users); every tensor with a first dimension is per
    row and `n_targets` is recounted. A tensor of another shape is a ValueError naming it."""
    part, parts = rank() if part is None else part, world_size() if parts is None else parts
    per_row = _row_targets(batch)  # (B,)
    rows = len(per_row)
    if "n_targets" in batch and int(batch["n_targets"]) != int(per_row.sum()):
        raise ValueError(f"training batch says n_targets={int(batch['n_targets'])} but its rows hold "
                         f"{int(per_row.sum())} targets: a batch layout that slice_batch does not know")
    if "seq_target" in batch:
        low, high = part * rows // parts, (part + 1) * rows // parts
        bounds = torch.cat([per_row.new_zeros(1), per_row.cumsum(0)])  # (B + 1,) first target of each row
        first, last = int(bounds[low]), int(bounds[high])
        for name, tensor in batch.items():
            if not name.startswith("seq_") and (tensor.dim() == 0 or tensor.shape[0] != int(bounds[-1])):
                raise ValueError(f"rating batch tensor {name!r} of shape {tuple(tensor.shape)} is neither per row "
                                 f"(seq_*) nor per target ({int(bounds[-1])} targets): slice_batch cannot slice it")
        return ({name: tensor[low:high] if name.startswith("seq_") else tensor[first:last]
                 for name, tensor in batch.items()}, last - first)
    _, user_of_row, rows_of_user = torch.unique(batch["user"], return_inverse=True, return_counts=True)
    before = torch.cumsum(rows_of_user, 0) - rows_of_user  # (U,) rows of the users before each, in user order
    mine = (before * parts // rows == part)[user_of_row]  # (B,) rows of the users this part takes
    sliced: dict[str, torch.Tensor] = {}
    for name, tensor in batch.items():
        if name == "n_targets":
            continue
        if tensor.dim() == 0 or tensor.shape[0] != rows:
            raise ValueError(f"batch tensor {name!r} of shape {tuple(tensor.shape)} has no row dimension of "
                             f"{rows}: slice_batch cannot slice it")
        sliced[name] = tensor[mine]
    targets = int(per_row[mine].sum())
    if "n_targets" in batch:
        sliced["n_targets"] = torch.tensor(targets)
    return sliced, targets
