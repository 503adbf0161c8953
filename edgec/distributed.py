"""Training across processes and GPUs with ``torch.distributed`` (launched by ``torchrun``).

``torchrun --nproc-per-node 4 -m edgec build recipe.yaml`` (or ``edgec build recipe.yaml --nproc 4``,
which starts torchrun for you) runs one process per rank; torchrun sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`session` opens the process group (NCCL on
CUDA, gloo on CPUs) and always closes it; everything else here is a no-op in a single process, so
the same code runs with and without torchrun.

The rules the pipeline follows (see docs/distributed.md):
- ``batch_size`` in a recipe is the **global** batch: each rank trains on a disjoint shard
  (:func:`shard`) of the same seeded permutation, so 1 and N processes see the same batches.
- Rank 0 decides (stage cache, checkpoint to resume), writes every file and broadcasts what the
  others need (:func:`from_main`); the other ranks train with it and read what it published.
- Decisions that end or shape training (NaN guard, best epoch, pruned channels) are taken on
  values reduced across ranks, so every rank takes the same one.

Example:
    >>> with session():                       # no-op without torchrun
    ...     loss, n = sum_floats(batch_loss * len(batch), len(batch))
    ...     if is_main():
    ...         save(...)
"""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from edgec.errors import EdgecError, RecipeError, RunFailed

if TYPE_CHECKING:
    import torch
    from torch import nn

T = TypeVar("T")
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# Rank-0-only stages (export, calibration, verify, bench) can take long; the others wait that long.
TIMEOUT = timedelta(minutes=float(os.environ.get("EDGEC_DIST_TIMEOUT_MIN", "120")))


def launched() -> bool:
    """True when this process was started by torchrun (all of its environment variables are set).

    Example:
        >>> launched()            # False in a plain `edgec build`
        False
    """
    present = [k for k in TORCHRUN_ENV if k in os.environ]
    if present and len(present) < len(TORCHRUN_ENV):
        missing = [k for k in TORCHRUN_ENV if k not in os.environ]
        raise EdgecError(f"incomplete torchrun environment: {', '.join(present)} set but "
                         f"{', '.join(missing)} missing",
                         hint="launch with `torchrun --nproc-per-node N -m edgec build ...` or "
                              "`edgec build ... --nproc N`, or unset those variables")
    return bool(present)


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank() -> int:
    """This process's rank (0 without a process group)."""
    d = _dist()
    return d.get_rank() if d else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    d = _dist()
    return d.get_world_size() if d else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that writes files and prints."""
    return rank() == 0


def active() -> bool:
    """True when a process group with more than one rank is open (collectives are needed)."""
    return world_size() > 1


DEVICES = "auto, cpu, cuda or cuda:N"  # what train.device accepts (edgec.recipe checks the spelling)


def device(requested: str = "auto") -> torch.device:
    """Where this rank trains, from the recipe's ``train.device`` (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``).

    - Under torchrun with NCCL: ``cuda:LOCAL_RANK`` (``auto`` and ``cuda``; each rank its own GPU).
    - Under torchrun with gloo: the CPU (``auto`` and ``cpu``).
    - A single process: ``auto`` is the current CUDA GPU when torch sees one, else the CPU; ``cuda``
      / ``cuda:N`` insist on that GPU.

    A request this process cannot honour raises :class:`RecipeError` (exit 2) saying why.

    Example:
        >>> device("cpu")
        device(type='cpu')
    """
    import torch

    want = str(requested).strip().lower()
    if want not in ("auto", "cpu", "cuda") and not (want.startswith("cuda:") and want[5:].isdigit()):
        raise RecipeError(f"train.device: {requested!r} is not a device",
                          hint=f"use one of {DEVICES} (N = the GPU's index)")
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise RecipeError(f"train.device: {want}, but torch sees no CUDA GPU (torch {torch.__version__}, "
                          f"CUDA build: {torch.version.cuda or 'none'})",
                          hint="set train.device: auto or cpu to train on the CPU; for the GPU install a CUDA "
                               "build of torch and check the driver (`edgec doctor`)")
    d = _dist()
    if d is not None:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if d.get_backend() == "nccl":
            if want == "cpu":
                raise RecipeError("train.device: cpu, but torchrun opened an NCCL process group (GPUs)",
                                  hint="set EDGEC_DIST_BACKEND=gloo to train on CPUs under torchrun, or "
                                       "train.device: auto")
            if want.startswith("cuda:") and int(want[5:]) != local:
                raise RecipeError(f"train.device: {want}, but under torchrun rank {rank()} trains on its "
                                  f"LOCAL_RANK GPU cuda:{local}",
                                  hint="use train.device: cuda (or auto) with torchrun; choose GPUs with "
                                       "CUDA_VISIBLE_DEVICES")
            return torch.device("cuda", local)
        if want != "auto" and want != "cpu":
            raise RecipeError(f"train.device: {want}, but torchrun opened a gloo process group (CPUs)",
                              hint="unset EDGEC_DIST_BACKEND (NCCL is used when CUDA is available), or set "
                                   "train.device: auto or cpu")
        return torch.device("cpu")
    if want == "cpu" or (want == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    index = int(want[5:]) if want.startswith("cuda:") else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise RecipeError(f"train.device: {want}, but torch sees {torch.cuda.device_count()} CUDA GPU(s)",
                          hint=f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}, or train.device: cuda")
    return torch.device("cuda", index)


def _comm_device() -> torch.device:
    """The device collectives run on: NCCL reduces CUDA tensors only, gloo CPU tensors."""
    import torch

    d = _dist()
    if d is not None and d.get_backend() == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Open the process group when launched by torchrun, and always close it (errors, Ctrl-C).

    Backend: NCCL when CUDA is available (``EDGEC_DIST_BACKEND=gloo`` forces gloo), else gloo.
    Ranks other than 0 print nothing but their errors. Without torchrun, or with a process group
    already open (a caller's own), it does nothing.
    """
    if not launched() or _dist() is not None:
        yield
        return
    import torch
    import torch.distributed as dist

    from edgec.console import console

    local = int(os.environ["LOCAL_RANK"])
    backend = os.environ.get("EDGEC_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
    kwargs: dict[str, Any] = {}
    if backend == "nccl":
        if local >= torch.cuda.device_count():
            raise EdgecError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s)",
                             hint="start at most one process per GPU (--nproc-per-node <= GPUs), "
                                  "or set EDGEC_DIST_BACKEND=gloo to train on CPUs")
        torch.cuda.set_device(local)
        kwargs["device_id"] = torch.device("cuda", local)
    dist.init_process_group(backend, timeout=TIMEOUT, **kwargs)
    me = dist.get_rank()
    quiet = console.quiet
    console.quiet = me != 0
    try:
        yield
        # Leave together: a rank that tears down its gloo connections while a peer still uses them
        # can abort that peer ("terminate called without an active exception").
        with contextlib.suppress(Exception):
            dist.barrier()
    except EdgecError as exc:
        if me != 0:  # every rank prints its error: say whose it is
            exc.message = f"[rank {me}] {exc.message}"
        raise
    except dist.DistError as exc:  # a peer died mid-collective: say so rather than a backend trace
        raise RunFailed(f"[rank {me}] lost the other ranks: {str(exc).splitlines()[0]}",
                        hint="another rank failed or was interrupted first; its error is above") from exc
    finally:
        console.quiet = quiet
        # Free DDP wrappers (reference cycles) while the process group is alive: a group destroyed
        # later, during interpreter shutdown, can abort the process from gloo's worker threads.
        gc.collect()
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (no-op in one process)."""
    d = _dist()
    if d is not None and world_size() > 1:
        if d.get_backend() == "nccl":
            d.barrier(device_ids=[_comm_device().index])
        else:
            d.barrier()


def sum_floats(*values: float) -> list[float]:
    """Sum each value over all ranks (one all-reduce, float64); the values as given in one process.

    Example:
        >>> loss_sum, count, bad = sum_floats(loss * n, n, float(not math.isfinite(loss)))
    """
    if not active():
        return [float(v) for v in values]
    import torch

    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    _dist().all_reduce(t)
    return t.tolist()


def all_reduce_sum(tensors: Sequence[torch.Tensor]) -> None:
    """Sum tensors over all ranks, in place (each moved to the backend's device and back)."""
    if not active():
        return
    d, dev = _dist(), _comm_device()
    for t in tensors:
        buf = t.to(dev)
        d.all_reduce(buf)
        t.copy_(buf)


def mean_over_samples(values: dict[str, torch.Tensor], count: int) -> dict[str, torch.Tensor]:
    """Per-key means over every rank's samples, from this rank's means over its ``count`` samples.

    Used for criterion statistics (Taylor scores): ``sum_r count_r * mean_r / sum_r count_r``.

    Example:
        >>> scores = mean_over_samples(local_scores, seen_here)
    """
    if not active():
        return values
    names = sorted(values)
    sums = [values[n].double() * count for n in names]
    all_reduce_sum(sums)
    (total,) = sum_floats(count)
    return {n: s / total for n, s in zip(names, sums)}


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (pickled between this job's own processes).

    Tensors inside must be on the CPU (another rank may not have the sender's device).
    """
    if not active():
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    _dist().all_gather_object(out, obj)
    return out


class RankFailed(EdgecError):
    """Raised on the other ranks when rank 0 failed in work only it does."""


def from_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and return its result on every rank; if it raises, every rank
    raises (rank 0 its own error, the others a :class:`RankFailed` with the same message/exit code).

    Example:
        >>> art = from_main(lambda: store.find("teacher", key))    # the cache decision, shared
    """
    if not active():
        return fn()
    if is_main():
        try:
            result = fn()
        except Exception as exc:
            broadcast_object(("error", _describe(exc)))
            raise
        return broadcast_object(("ok", result))[1]
    status, payload = broadcast_object(None)
    if status == "error":
        message, hint, code = payload
        err = RankFailed(f"rank 0 failed: {message}", hint=hint)
        err.exit_code = code
        raise err
    return payload


def _describe(exc: Exception) -> tuple[str, str | None, int]:
    if isinstance(exc, EdgecError):
        return exc.message, exc.hint, exc.exit_code
    return f"{type(exc).__name__}: {exc}", "this is a bug in edgec; see rank 0's traceback", 1


def check_same(value: Any, what: str) -> None:
    """Internal consistency check: every rank's ``value`` equals rank 0's (e.g. pruned channels).

    Raises RuntimeError (a bug, not a user error) naming the ranks that differ.
    """
    if not active():
        return
    reference = broadcast_object(value)
    differs = all_gather_object(repr(value) != repr(reference))  # lists/dicts of numbers and names
    bad = [r for r, d in enumerate(differs) if d]
    if bad:
        raise RuntimeError(f"ranks {bad} disagree with rank 0 on {what}")


def check_agreement(label: str, digest: str, detail: str = "") -> None:
    """Raise :class:`RecipeError` on every rank unless all ranks have the same ``digest``.

    ``label`` says what was compared ("recipe and data"), ``detail`` is shown per rank.

    Example:
        >>> check_agreement("recipe and data", stable_hash([recipe, fingerprint]), recipe.name)
    """
    if not active():
        return
    seen = all_gather_object((digest, detail))
    bad = [r for r, (d, _) in enumerate(seen) if d != seen[0][0]]
    if bad:
        lines = "; ".join(f"rank {r}: {d[:12]} {info}".rstrip() for r, (d, info) in enumerate(seen))
        raise RecipeError(f"ranks disagree on the {label}: rank(s) {', '.join(map(str, bad))} differ "
                          f"from rank 0 ({lines})",
                          hint="launch every rank with the same recipe file, --data folder and edgec "
                               "version (on several machines: copy them, do not edit one)")


def shard(items: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of ``items`` (sizes differ by at most one; all of it in one process).

    Example:
        >>> shard(torch.arange(5))      # rank 0 of 2: tensor([0, 1, 2]); rank 1: tensor([3, 4])
    """
    if not active():
        return items
    return items.tensor_split(world_size())[rank()]


def rank_seed(seed: int) -> int:
    """``seed`` on rank 0, a different one on each other rank (dropout noise must differ per
    shard; a single process keeps its seed, so its runs do not change)."""
    import numpy as np

    r = rank()
    return seed if r == 0 else int(np.random.SeedSequence([seed, r]).generate_state(1)[0])


@contextlib.contextmanager
def shared_rng(seed: int) -> Iterator[None]:
    """Inside, torch's generator is seeded with ``seed`` on every rank (then restored): for random
    decisions every rank must take alike, e.g. stochastic rounding of the weights after a step.
    Does nothing in one process (single-process runs keep their random stream)."""
    if not active():
        yield
        return
    import torch

    dev = _comm_device()  # under torchrun the training device is the backend's
    with torch.random.fork_rng(devices=[dev.index] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics, observers) to every rank.

    DDP broadcasts them before each forward, but the last step's update stays rank-local; after
    this every rank holds the same model, so evaluations and checkpoints agree.
    """
    if not active():
        return
    d = _dist()
    for buf in model.buffers():
        tmp = buf.to(_comm_device())
        d.broadcast(tmp, src=0)
        buf.copy_(tmp)


@contextlib.contextmanager
def data_parallel(model: nn.Module, trainable: Sequence[torch.nn.Parameter] | None = None) -> Iterator[nn.Module]:
    """Yield the module to call in training: ``DistributedDataParallel(model)`` with several ranks,
    else ``model`` itself.

    DDP broadcasts rank 0's weights and buffers when it wraps (so all ranks start alike) and
    averages gradients in backward. Parameters outside ``trainable`` are frozen while it is open
    (DDP expects a gradient for every parameter that requires one). Wrap anew whenever the
    model's shape changes (pruning) or another module is trained.
    """
    if not active():
        yield model
        return
    from torch.nn.parallel import DistributedDataParallel

    keep = {id(p) for p in trainable} if trainable is not None else None
    frozen = [p for p in model.parameters() if p.requires_grad and keep is not None and id(p) not in keep]
    for p in frozen:
        p.requires_grad_(False)
    try:
        dev = next(model.parameters()).device
        ddp = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
        yield ddp
        del ddp  # its reducer's gradient hooks go with it
    finally:
        for p in frozen:
            p.requires_grad_(True)


def torchrun_command(nproc: int, edgec_args: Sequence[str]) -> list[str]:
    """The torchrun command line that runs ``edgec <edgec_args>`` on ``nproc`` local processes.

    Example:
        >>> torchrun_command(2, ["build", "digits"])[-4:]
        ['-m', 'edgec', 'build', 'digits']
    """
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(nproc), "-m", "edgec", *edgec_args]


def launch(nproc: int, edgec_args: Sequence[str]) -> int:
    """Run ``edgec <edgec_args>`` under torchrun with ``nproc`` processes on this machine; return
    torchrun's exit status (0 when every rank succeeded).

    Example:
        >>> launch(2, ["build", "digits", "--out", "runs/digits-2p"])       # doctest: +SKIP
        0
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise EdgecError(f"--nproc {nproc!r}: expected a whole number >= 1",
                         hint="e.g. --nproc 2 (one process per GPU, or per CPU socket)")
    if launched():
        raise EdgecError("--nproc was given inside a torchrun launch",
                         hint="either run `torchrun ... -m edgec build` or `edgec build --nproc N`, not both")
    proc = subprocess.Popen(torchrun_command(nproc, edgec_args))
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached torchrun and its ranks too: let them stop cleanly
        proc.wait()
        return 130
