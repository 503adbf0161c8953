"""Validation: mean cross-entropy and accuracy, and the checks that turn (x, y) into tensors.

Example:
    >>> val_loss, val_acc = evaluate(model, x_val, y_val)    # model's mode is left as it was
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgec import distributed
from edgec.errors import DataError


def as_tensors(data: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Check an (x, y) pair and view it as CPU tensors: x (N, ...) float32 (or integer token ids
    for text models, kept as they are), y (N,) int64."""
    try:
        x, y = data
        x, y = np.asarray(x), np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} data must be a pair (x, y) of numpy arrays",
                        hint="pass (x, y) with x shaped (N, C, H, W) and y shaped (N,)") from exc
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(y) == 0 \
            or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{name} data has x {x.shape} {x.dtype} and y {y.shape} {y.dtype}",
                        hint="pass x shaped (N, C, H, W) float32 and y shaped (N,) int64, same N > 0")
    if not np.issubdtype(x.dtype, np.integer):
        x = np.ascontiguousarray(x, dtype=np.float32)
    # torch.from_numpy shares memory (no copy) but refuses read-only arrays (e.g. np.load mmap).
    x = x if x.flags.writeable and x.flags.c_contiguous else np.array(x, order="C")
    y = np.array(y, dtype=np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model with neither."""
    # Batches go wherever the model lives, so the same loop runs on CPU, CUDA or Jetson.
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _eval_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
               device: torch.device) -> tuple[float, float]:
    """Summed cross-entropy and number of correct predictions over (x, y), eval mode, no autograd."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    try:
        with torch.inference_mode():
            for i in range(0, len(y), batch_size):
                xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
                logits = model(xb)  # (B, K)
                loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
                correct += (logits.argmax(dim=-1) == yb).sum()
    finally:
        model.train(was_training)
    return loss_sum.item(), float(correct.item())


def evaluate_tensors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                     device: torch.device, *, across_ranks: bool = False) -> tuple[float, float]:
    """:func:`evaluate` on tensors already checked by :func:`as_tensors` (the loop's fast path).

    ``across_ranks``: under torchrun each rank evaluates its share of the rows and the sums are
    reduced, so every rank gets the same numbers (a collective: every rank must call it).
    """
    if across_ranks and distributed.active():
        xs, ys = distributed.shard(x), distributed.shard(y)
        loss_sum, correct = _eval_sums(model, xs, ys, batch_size, device)
        loss_sum, correct, n = distributed.sum_floats(loss_sum, correct, len(ys))
        return loss_sum / n, correct / n
    loss_sum, correct = _eval_sums(model, x, y, batch_size, device)
    return loss_sum / len(y), correct / len(y)


def mean_loss_tensors(model: nn.Module, loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor],
                                                         torch.Tensor],
                      x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device, *,
                      across_ranks: bool = False) -> float:
    """Sample-weighted mean of a training ``loss_fn`` over (x, y), in eval mode without gradients.

    What fit's ``monitor="val_objective"`` compares between epochs (e.g. FitNets' hint loss on the
    validation data, the criterion the paper's stage 1 stops on). The model's mode is restored.
    ``across_ranks`` as in :func:`evaluate_tensors`.

    Example:
        >>> mean_loss_tensors(model, cross_entropy_loss, xv, yv, 256, torch.device("cpu"))
    """
    if across_ranks and distributed.active():
        x, y = distributed.shard(x), distributed.shard(y)
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        with torch.no_grad():  # not inference_mode: loss functions may build small tensors/modules
            for i in range(0, len(y), batch_size):
                xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
                total += float(loss_fn(model, xb, yb)) * len(yb)
    finally:
        model.train(was_training)
    if across_ranks:
        total, n = distributed.sum_floats(total, len(y))
        return total / n
    return total / len(y)


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray,
             batch_size: int = 256, *, across_ranks: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y), in eval mode without autograd.

    The model's train/eval mode is restored afterwards. ``across_ranks=True`` splits the rows
    over torchrun's ranks and reduces the result (every rank must call it; same numbers on all).

    Example:
        >>> val_loss, val_acc = evaluate(model, x_val, y_val)
    """
    xt, yt = as_tensors((x, y), "evaluation")
    return evaluate_tensors(model, xt, yt, batch_size, device_of(model), across_ranks=across_ranks)
