"""The training result type, the optimizer/scheduler a :class:`TrainConfig` names, and fit's monitors.

:class:`TrainConfig` itself lives in :mod:`edgec.configs` (no torch there: the recipe's ``train``
sections are that class); it is re-exported here. Every stage (teacher, distill, prune fine-tuning,
QAT) builds its optimizer the same way, from here.

Example:
    >>> cfg = TrainConfig(epochs=5, lr=3e-3, optimizer="sgd", scheduler="step")
    >>> cfg.fingerprint()        # 16 hex digits; changes when any field changes
    '...'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgec.configs import OPTIMIZERS, SCHEDULERS, TrainConfig
from edgec.errors import RecipeError
from edgec.registry import did_you_mean

# What picks the epoch whose weights fit() returns. "val_accuracy" suits any classifier; a stage
# whose head is untrained (FitNets' hint stage) picks by its own loss on the validation data
# ("val_objective"), by its training loss, or simply keeps the last epoch.
MONITORS = ("val_accuracy", "val_objective", "train_loss", "last")

# (model, x, y) -> scalar loss. x: (B, C, H, W) on the model's device, y: (B,) int64.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _choice_error(what: str, value: str, valid: Iterable[str]) -> RecipeError:
    valid = list(valid)
    return RecipeError(f"unknown {what} {value!r}", hint=f"{did_you_mean(value, valid, cutoff=0.6)}valid: {', '.join(valid)}")


@dataclass
class TrainResult:
    """What :func:`edgec.train.fit` returns.

    ``model`` holds the weights of ``best_epoch`` (by fit's ``monitor``: highest validation accuracy
    unless told otherwise; ties go to the later epoch) and ``best_val_accuracy`` is that epoch's;
    ``history`` has one dict per epoch (epoch, train_loss, val_loss, val_accuracy, lr, seconds,
    and val_objective when monitored), resumed epochs included.

    Example:
        >>> result = fit(model, train, val, TrainConfig(epochs=2))
        >>> atomic_write_json("metrics.json", result.to_dict())
    """

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    resumed_from_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model, as plain JSON-serialisable values."""
        return {
            "history": [dict(h) for h in self.history],
            "best_epoch": int(self.best_epoch),
            "best_val_accuracy": float(self.best_val_accuracy),
            "resumed_from_epoch": self.resumed_from_epoch,
        }


def check_monitor(monitor: str) -> None:
    """Raise :class:`RecipeError` (closest name + the valid ones) unless ``monitor`` is in MONITORS."""
    if monitor not in MONITORS:
        raise _choice_error("monitor", str(monitor), MONITORS)


def monitor_score(monitor: str, epoch: int, train_loss: float, val_accuracy: float,
                  val_objective: float | None) -> float:
    """The number fit() maximises to pick the best epoch under ``monitor`` (ties: later epoch).

    Example:
        >>> monitor_score("train_loss", 3, 0.25, 0.9, None)
        -0.25
    """
    if monitor == "val_accuracy":
        return val_accuracy
    if monitor == "val_objective":
        if val_objective is None:
            raise ValueError("monitor 'val_objective' needs the validation objective")
        return -val_objective
    return -train_loss if monitor == "train_loss" else float(epoch)


def make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``config.optimizer`` names, over ``params``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               nesterov=config.momentum > 0, weight_decay=config.weight_decay)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer,
                   config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-epoch lr schedule ``config.scheduler`` names (None for ``"none"``)."""
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.epochs // 3),
                                               gamma=0.1)
    return None
