"""The one training loop every stage uses (teacher, distillation, pruning fine-tune, QAT).

Guarantees, in the order a user meets them:
- **Reproducible**: each epoch reseeds python/numpy/torch and shuffles with a ``torch.Generator``,
  all from ``(seed, epoch)``; so the same seed gives the same weights, and a resumed run sees the
  same batches (and dropout masks) as an uninterrupted one.
- **Resumable**: with a ``workdir``, ``checkpoint.pt`` is replaced atomically after each epoch;
  the next ``fit`` with the same config fingerprint continues after it (see ``checkpoint.py``).
- **Safe on divergence**: a NaN/Inf loss (or gradient norm, with ``grad_clip``) stops the run,
  puts the last good weights back into the model and raises :class:`TrainingDiverged`. A
  diverged state is never checkpointed.
- **Distributed under torchrun** (:mod:`edgec.distributed`): ``batch_size`` is the global batch;
  each rank trains DDP on its shard of the same permutation; losses, the NaN guard and validation
  are reduced across ranks, so every rank takes the same decisions; rank 0 alone reads and writes
  the checkpoint (the model's own state: resumable with any number of processes).

Example:
    >>> set_seed(0); model = make_model()
    >>> result = fit(model, (x_train, y_train), (x_val, y_val), TrainConfig(epochs=5),
    ...              workdir="runs/teacher")
    >>> result.best_val_accuracy, evaluate(result.model, x_val, y_val)
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgec import distributed
from edgec.errors import TrainingDiverged
from edgec.train.checkpoint import (CHECKPOINT_NAME, copy_state, load_checkpoint,
                                    save_checkpoint, state_matches)
from edgec.train.config import (LossFn, TrainConfig, TrainResult, check_monitor, make_optimizer,
                                make_scheduler, monitor_score)
from edgec.train.evaluate import as_tensors, device_of, evaluate_tensors, mean_loss_tensors
from edgec.train.progress import Reporter

VAL_BATCH_SIZE = 256  # validation needs no gradients, so larger batches than training are fine


def set_seed(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (call it before building a model).

    Example:
        >>> set_seed(0); a = torch.randn(3); set_seed(0); assert torch.equal(a, torch.randn(3))
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The default :data:`LossFn`: cross-entropy of ``model(x)`` (B, K) against ``y`` (B,)."""
    return F.cross_entropy(model(x), y)


def _epoch_seeds(seed: int, epoch: int) -> tuple[int, int]:
    # SeedSequence mixes (seed, epoch) into two unrelated 32-bit seeds: one for the global RNGs
    # (dropout, augmentation), one for this epoch's shuffle. Pure function of its inputs.
    a, b = np.random.SeedSequence([seed, epoch]).generate_state(2)
    return int(a), int(b)


class _Diverged(Exception):
    def __init__(self, what: str, value: float, step: int | None, steps: int, bad_inputs: bool):
        super().__init__(what)
        self.what, self.value, self.step, self.steps, self.bad_inputs = \
            what, value, step, steps, bad_inputs


def _batch_starts(n: int, config: TrainConfig) -> list[int]:
    starts = list(range(0, n, config.batch_size))
    # A final batch of one sample breaks BatchNorm in train mode ("expected more than 1 value per
    # channel"); drop it (with N ranks: one that gives any rank fewer than two). The shuffle puts
    # different samples there each epoch.
    if len(starts) > 1 and n - starts[-1] < 2 * distributed.world_size():
        starts.pop()
    return starts[:config.max_batches_per_epoch] if config.max_batches_per_epoch else starts


def _train_epoch(net: nn.Module, model: nn.Module, loss_fn: LossFn,
                 optimizer: torch.optim.Optimizer, trainable: list[nn.Parameter], x: torch.Tensor,
                 y: torch.Tensor, config: TrainConfig, epoch: int, device: torch.device,
                 report: Reporter, after_step: Callable[[nn.Module], None] | None = None) -> float:
    """One pass over a fresh shuffle of (x, y); returns the sample-weighted mean loss.

    ``net`` is what the loss calls (``model``, or its DDP wrapper under torchrun); every rank
    draws the same permutation and trains on its shard of each global batch.
    """
    torch_seed, shuffle_seed = _epoch_seeds(config.seed, epoch)
    set_seed(distributed.rank_seed(torch_seed))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(shuffle_seed))
    starts = _batch_starts(len(y), config)
    world = distributed.world_size()
    model.train()
    total, count = 0.0, 0
    with report.epoch(epoch, config.epochs, len(starts)) as advance:
        for step, start in enumerate(starts, 1):
            idx = order[start:start + config.batch_size]
            local = distributed.shard(idx)
            xb, yb = x[local].to(device), y[local].to(device)  # (B/world, C, H, W), (B/world,)
            loss = loss_fn(net, xb, yb)
            if loss.ndim != 0:
                raise TypeError(f"loss_fn must return a scalar tensor, got shape {tuple(loss.shape)}")
            # One host sync per step: the price of catching NaN at the step it appears. Under
            # torchrun the same (tiny) all-reduce gives every rank the global loss and NaN flag.
            value = float(loss.detach())
            loss_sum, n, bad = distributed.sum_floats(value * len(local), len(local),
                                                      float(not math.isfinite(value)))
            value = loss_sum / n
            if bad or not math.isfinite(value):
                raise _Diverged("loss", value, step, len(starts), _has_nonfinite(xb))
            model.zero_grad(set_to_none=True)
            if world > 1 and len(local) * world != n:
                # DDP averages rank gradients equally; weight unequal shards so the result is the
                # gradient of the global batch mean.
                loss = loss * (len(local) * world / n)
            loss.backward()
            if config.grad_clip is not None:
                norm = float(torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip))
                if not math.isfinite(norm):
                    raise _Diverged("gradient norm", norm, step, len(starts), _has_nonfinite(xb))
            optimizer.step()
            if after_step is not None:  # e.g. BinaryConnect's clip / stochastic rounding's re-rounding
                with distributed.shared_rng(torch_seed + step):  # ranks must round alike
                    after_step(model)
            total += loss_sum
            count += int(n)
            advance(loss=value)
    return total / count


@contextlib.contextmanager
def _reproducible_on(device: torch.device):
    """On a GPU, cuDNN uses deterministic algorithms (no autotuning) while training, so the same seed
    gives the same weights run after run on that GPU (restored afterwards). Nothing on the CPU."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def _has_nonfinite(x: torch.Tensor) -> bool:
    return x.is_floating_point() and not bool(torch.isfinite(x).all())


def _trainable(model: nn.Module, params: Iterable[nn.Parameter] | None) -> list[nn.Parameter]:
    if params is None:
        chosen = [p for p in model.parameters() if p.requires_grad]
    else:
        chosen = list(params)
        own = {id(p) for p in model.parameters()}
        if any(id(p) not in own for p in chosen):
            # Only the model's state is checkpointed; a parameter outside it would silently
            # restart from scratch on resume. Wrap extra modules (a FitNets regressor) into it.
            raise ValueError("params must be parameters of model (wrap extra trainable modules "
                             "into the model so they are checkpointed)")
    if not chosen:
        raise ValueError("there is nothing to train: no parameter requires grad")
    return chosen


def _resume_point(path: Path | None, config: TrainConfig, resume_key: str, monitor: str,
                  model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                  report: Reporter) -> dict[str, Any] | None:
    """The checkpoint to continue from, with model/optimizer already loaded from it; or None."""
    # Rank 0 reads the file and sends it to the others (their workdir is not the published one).
    ckpt = distributed.from_main(lambda: load_checkpoint(path, device if not distributed.active()
                                                         else torch.device("cpu"))) \
        if path is not None else None
    if ckpt is None:
        return None
    if ckpt.get("fingerprint") != config.fingerprint():
        report.line(f"{path} was written with a different training config "
                    f"({ckpt.get('fingerprint')} != {config.fingerprint()}); starting over")
        return None
    if ckpt.get("resume_key", "") != resume_key:
        report.line(f"{path} was written for another loss ({ckpt.get('resume_key')!r} != "
                    f"{resume_key!r}); starting over")
        return None
    if ckpt.get("monitor", "val_accuracy") != monitor:
        report.line(f"{path} chose its best epoch by {ckpt.get('monitor', 'val_accuracy')!r}, "
                    f"not {monitor!r}; starting over")
        return None
    if not state_matches(model, ckpt["model"]):
        report.line(f"{path} does not fit this model's parameters; starting over")
        return None
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except ValueError:  # a different `params` selection: groups/sizes differ
        report.line(f"{path} was written for other trainable parameters; starting over")
        return None
    model.load_state_dict(ckpt["model"])
    return ckpt


def fit(model: nn.Module, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
        config: TrainConfig, *, loss_fn: LossFn | None = None, workdir: str | Path | None = None,
        description: str = "train", progress: bool = True,
        params: Iterable[nn.Parameter] | None = None, resume_key: str = "",
        monitor: str = "val_accuracy", checkpoint_name: str = CHECKPOINT_NAME,
        on_epoch_start: Callable[[int, int], None] | None = None,
        after_step: Callable[[nn.Module], None] | None = None) -> TrainResult:
    """Train ``model`` in place and return it holding its best weights (by ``monitor``).

    ``loss_fn(model, x, y)`` defaults to cross-entropy; validation always reports plain
    cross-entropy and accuracy. ``params`` restricts training to some of the model's parameters.
    ``monitor`` picks the returned epoch: ``"val_accuracy"`` (highest), ``"val_objective"``
    (lowest ``loss_fn`` on the validation data, in eval mode; logged as ``val_objective``),
    ``"train_loss"`` (lowest) or ``"last"``; ties go to the later epoch.
    ``on_epoch_start(epoch, epochs)`` runs before each epoch's training (1-based, resumed runs
    included), e.g. to anneal a loss weight. ``after_step(model)`` runs right after every
    ``optimizer.step()`` (e.g. to clip or re-quantize weights in quantized training). With ``workdir``, resumes from
    ``workdir/<checkpoint_name>`` when its config fingerprint, ``resume_key`` and ``monitor``
    match (a finished run returns at once); the config cannot see what ``loss_fn`` does, so pass
    e.g. a distillation method's hyper-parameters as ``resume_key``. ``epochs=0`` only
    evaluates. The returned model is in eval mode.

    Raises :class:`TrainingDiverged` on a NaN/Inf loss, after restoring the last good weights.

    Example:
        >>> result = fit(model, (x, y), (xv, yv), TrainConfig(epochs=3, lr=1e-2), workdir="runs/t")
        >>> result.best_epoch, result.history[-1]["val_accuracy"]
    """
    x_tr, y_tr = as_tensors(train, "training")
    x_va, y_va = as_tensors(val, "validation")
    device = device_of(model)
    loss_fn = loss_fn or cross_entropy_loss
    trainable = _trainable(model, params)
    check_monitor(monitor)
    if config.epochs == 0:
        _, val_acc = evaluate_tensors(model, x_va, y_va, VAL_BATCH_SIZE, device, across_ranks=True)
        return TrainResult(model=model.eval(), best_val_accuracy=val_acc)
    optimizer = make_optimizer(trainable, config)
    scheduler = make_scheduler(optimizer, config)
    report = Reporter(description, enabled=progress and distributed.is_main())
    ckpt_path = Path(workdir) / checkpoint_name if workdir is not None else None

    history: list[dict] = []
    done, best_epoch, best_acc, best_state = 0, 0, -1.0, None
    best_score = -math.inf
    ckpt = _resume_point(ckpt_path, config, resume_key, monitor, model, optimizer, device, report)
    if ckpt is not None:
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        history, done = list(ckpt["history"]), int(ckpt["epoch"])
        best_epoch, best_acc = int(ckpt["best_epoch"]), float(ckpt["best_val_accuracy"])
        best_score = float(ckpt.get("best_score", best_acc))
        best_state = ckpt["best_state"]
        report.line(f"resuming after epoch {done}/{config.epochs} from {ckpt_path}"
                    if done < config.epochs else
                    f"already trained ({done} epochs, {ckpt_path}); best epoch {best_epoch}, "
                    f"val_acc {best_acc:.2%}")
    resumed_from = done if ckpt is not None else None
    good_state, good_epoch = copy_state(model), done  # what a divergence rolls back to

    epoch = done
    parallel = contextlib.ExitStack()  # under torchrun: the DDP wrapper, for these epochs only
    parallel.enter_context(_reproducible_on(device))
    net = parallel.enter_context(distributed.data_parallel(model, trainable))
    try:
        for epoch in range(done + 1, config.epochs + 1):
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            if on_epoch_start is not None:
                on_epoch_start(epoch, config.epochs)
            train_loss = _train_epoch(net, model, loss_fn, optimizer, trainable, x_tr, y_tr,
                                      config, epoch, device, report, after_step)
            if scheduler is not None:
                scheduler.step()
            distributed.sync_buffers(model)  # every rank now holds rank 0's model
            val_loss, val_acc = evaluate_tensors(model, x_va, y_va, VAL_BATCH_SIZE, device,
                                                 across_ranks=True)
            if not math.isfinite(val_loss):
                raise _Diverged("validation loss", val_loss, None, 0, _has_nonfinite(x_va))
            val_obj = mean_loss_tensors(model, loss_fn, x_va, y_va, VAL_BATCH_SIZE, device,
                                        across_ranks=True) if monitor == "val_objective" else None
            if val_obj is not None and not math.isfinite(val_obj):
                raise _Diverged("validation objective", val_obj, None, 0, _has_nonfinite(x_va))
            now = copy_state(model)
            score = monitor_score(monitor, epoch, train_loss, val_acc, val_obj)
            is_best = score >= best_score  # ties go to the later epoch
            if is_best:
                best_state, best_epoch, best_acc, best_score = now, epoch, val_acc, score
            row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                   "val_accuracy": val_acc, "lr": lr, "seconds": time.perf_counter() - t0}
            if val_obj is not None:
                row["val_objective"] = val_obj
            history.append(row)
            if ckpt_path is not None and distributed.is_main():
                save_checkpoint(ckpt_path, {
                    "fingerprint": config.fingerprint(), "resume_key": resume_key,
                    "config": config.model_dump() | {"seed": config.seed},
                    "description": description, "epoch": epoch, "model": now,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "history": history, "best_state": best_state, "best_epoch": best_epoch,
                    "best_val_accuracy": best_acc, "monitor": monitor, "best_score": best_score,
                    "world_size": distributed.world_size()})
            # Only now is this epoch "good": a Ctrl-C during the write above rolls back further.
            good_state, good_epoch = now, epoch
            report.line(f"epoch {epoch}/{config.epochs}  train_loss {train_loss:.4f}  "
                        f"val_loss {val_loss:.4f}  val_acc {val_acc:.2%}  "
                        + (f"val_obj {val_obj:.4f}  " if val_obj is not None else "")
                        + f"lr {lr:.2e}  {row['seconds']:.1f}s" + ("  *best" if is_best else ""))
    except _Diverged as d:
        model.load_state_dict(good_state)
        raise _diverged_error(d, epoch, config, optimizer, description, good_epoch,
                              ckpt_path) from None
    except KeyboardInterrupt:
        model.load_state_dict(good_state)
        kept = f"; checkpoint of epoch {good_epoch} kept in {ckpt_path}, run again to resume" \
            if ckpt_path is not None and good_epoch else ""
        report.line(f"interrupted during epoch {epoch}{kept}")
        raise
    finally:
        parallel.close()

    model.load_state_dict(best_state)
    model.zero_grad(set_to_none=True)  # the last step's gradients mean nothing for best_state
    model.eval()
    return TrainResult(model=model, history=history, best_epoch=best_epoch,
                       best_val_accuracy=best_acc, resumed_from_epoch=resumed_from)


def _diverged_error(d: _Diverged, epoch: int, config: TrainConfig,
                    optimizer: torch.optim.Optimizer, description: str, good_epoch: int,
                    ckpt_path: Path | None) -> TrainingDiverged:
    lr = optimizer.param_groups[0]["lr"]
    where = f"epoch {epoch}/{config.epochs}" + (f", step {d.step}/{d.steps}" if d.step else
                                                 " (validation)")
    todo = [f"lower the learning rate (lr={lr:.3g} now; try {lr / 10:.3g})",
            "set grad_clip (e.g. 1.0)" if config.grad_clip is None
            else f"lower grad_clip (now {config.grad_clip})",
            "check the data for NaN/Inf values"]
    if d.bad_inputs:
        todo.insert(0, "the inputs of that batch contain NaN/Inf: clean the data first")
    good = f"end of epoch {good_epoch}" if good_epoch else "the initial weights"
    if ckpt_path is not None and good_epoch:
        kept = f"the last good checkpoint ({good}) is kept in {ckpt_path}"
    elif ckpt_path is not None:
        kept = "no epoch completed, so no checkpoint was written"
    else:
        kept = "no workdir was given, so nothing was saved to disk"
    err = TrainingDiverged(
        f"{description}: training diverged: the {d.what} became {d.value} at {where} (lr {lr:.3g})",
        hint="; ".join(todo) + f". The model was restored to {good}; {kept}.")
    err.epoch, err.step, err.checkpoint = epoch, d.step, ckpt_path  # type: ignore[attr-defined]
    return err
