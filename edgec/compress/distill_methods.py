"""Distillation methods and their registry: what a method is (:class:`DistillMethod`, a list of
:class:`DistillStage` s), logit KD (Hinton et al.) and the soft-target loss.

Methods register by name (``distill.method`` in a recipe) with :func:`register_distill_method`;
:mod:`edgec.compress.hints` registers ``fitnets`` and ``features``. :mod:`edgec.compress.distill`
runs them (and imports every built-in method, so import it, not this module, to build one by name).

Example:
    >>> method = make_distill_method("kd", teacher, student, temperature=2.0)
    >>> fit(student, train, val, TrainConfig(), loss_fn=method.loss_fn())
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from edgec.errors import ModelError, RecipeError
from edgec.registry import Registry, did_you_mean
from edgec.train import LossFn

def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target loss: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, batch mean.

    Logits are (B, K) (or (..., K), flattened to rows). The ``T^2`` factor keeps the gradient's
    size roughly independent of T (the soft-target gradients scale as 1/T^2), so ``alpha`` means
    the same at every temperature.

    Example:
        >>> kd_loss(torch.randn(8, 10), torch.randn(8, 10), temperature=4.0)
        tensor(...)
    """
    if student_logits.shape != teacher_logits.shape:
        raise ModelError(f"the student gives logits of shape {tuple(student_logits.shape)} but the "
                         f"teacher {tuple(teacher_logits.shape)}",
                         hint="give the student as many outputs (classes) as the teacher")
    k = student_logits.shape[-1]
    log_p_s = F.log_softmax(student_logits.reshape(-1, k) / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.reshape(-1, k).detach() / temperature, dim=-1)
    # batchmean = sum over classes, mean over rows: the true KL per sample.
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


@dataclass
class DistillStage:
    """One :func:`edgec.train.fit` call of a distillation method.

    ``model`` is the module trained (None = the student; it must contain every parameter it
    trains so they are checkpointed); ``params`` restricts training to some of them (None = all);
    ``config_overrides`` replaces fields of the run's :class:`TrainConfig` for this stage;
    ``monitor`` and ``on_epoch_start`` go to :func:`edgec.train.fit` (which epoch is kept; a
    per-epoch schedule). The last stage must train the student: ``model`` None, the student, or
    a wrapper whose ``.student`` is the student and whose forward is the student's.
    """

    name: str
    loss_fn: LossFn
    model: nn.Module | None = None
    params: list[nn.Parameter] | None = None
    config_overrides: dict[str, Any] = field(default_factory=dict)
    monitor: str = "val_accuracy"
    on_epoch_start: Callable[[int, int], None] | None = None


@runtime_checkable
class DistillMethod(Protocol):
    """What the registry builds: ``factory(teacher, student, **params) -> DistillMethod``."""

    name: str

    def hyperparameters(self) -> dict[str, Any]:
        """JSON-able settings: recorded in results and part of the checkpoint's resume key."""
        ...

    def loss_fn(self) -> LossFn:
        """The loss that trains the whole student (the last stage's loss)."""
        ...

    def stages(self) -> list[DistillStage]:
        """The fit() calls, in order."""
        ...


METHODS: Registry[Callable[..., DistillMethod]] = Registry("distillation method", field="distill.method")


def register_distill_method(name: str) -> Callable[[Callable[..., DistillMethod]],
                                                   Callable[..., DistillMethod]]:
    """Class/factory decorator: make a method available to recipes as ``distill.method: name``.

    Its keyword parameters (after teacher and student) are the ones a recipe may set.

    Example:
        >>> @register_distill_method("fitnets")
        ... class FitNets:
        ...     def __init__(self, teacher, student, hint_layer: str = "", guided_layer: str = ""): ...
    """
    return METHODS.register(name)


def available_distill_methods() -> list[str]:
    """Registered method names, sorted."""
    return sorted(METHODS.names())


def _unknown(what: str, value: str, valid: list[str]) -> RecipeError:
    hint = did_you_mean(value, valid, cutoff=0.6) + f"valid: {', '.join(map(repr, valid)) or '(none)'}"
    return RecipeError(f"unknown {what} {value!r}", hint=hint)


def make_distill_method(name: str, teacher: nn.Module, student: nn.Module,
                        **params: Any) -> DistillMethod:
    """Build the registered method ``name``; unknown names/params are :class:`RecipeError` s.

    Example:
        >>> method = make_distill_method("kd", teacher, student, temperature=2.0)
        >>> fit(student, train, val, cfg, loss_fn=method.loss_fn())
    """
    if name not in METHODS:
        raise _unknown("distillation method", name, available_distill_methods())
    factory = METHODS.get(name)
    sig = inspect.signature(factory).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in sig):
        allowed = [p.name for p in sig if p.name not in ("teacher", "student")
                   and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in params:
            if key not in allowed:
                raise _unknown(f"parameter of distillation method '{name}':", key, allowed)
    return factory(teacher, student, **params)


def _number(method: str, name: str, value: Any, ok: Callable[[float], bool], expected: str) -> float:
    try:
        v = float(value)
        if isinstance(value, bool) or not ok(v):
            raise ValueError
    except (TypeError, ValueError):
        raise RecipeError(f"distill {method}: {name}={value!r} is invalid",
                          hint=f"set {name} to {expected}") from None
    return v


@register_distill_method("kd")
class LogitKD:
    """Logit distillation (Hinton et al. 2015): ``alpha * kd_loss(s, t, T) + (1 - alpha) * CE(s, y)``.

    The teacher runs in eval mode under ``no_grad`` and is never updated.

    Example:
        >>> loss_fn = LogitKD(teacher, student, temperature=4.0, alpha=0.9).loss_fn()
        >>> fit(student, train, val, TrainConfig(), loss_fn=loss_fn)
    """

    name = "kd"

    def __init__(self, teacher: nn.Module, student: nn.Module, temperature: float = 4.0,
                 alpha: float = 0.9):
        self.teacher, self.student = teacher, student
        self.temperature = _number("kd", "temperature", temperature, lambda v: 0 < v < float("inf"),
                                   "a positive number (Hinton et al. use 1-20; 4 is typical)")
        self.alpha = _number("kd", "alpha", alpha, lambda v: 0 <= v <= 1, "a number in [0, 1]")

    def hyperparameters(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "alpha": self.alpha}

    def loss_fn(self) -> LossFn:
        teacher, temperature, alpha = self.teacher, self.temperature, self.alpha

        def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if teacher.training:  # fixed dropout/BatchNorm statistics: the teacher is a constant
                teacher.eval()
            with torch.no_grad():
                t_logits = teacher(x)  # (B, K)
            s_logits = model(x)  # (B, K)
            soft = kd_loss(s_logits, t_logits, temperature)
            if alpha == 1.0:  # labels unused (pure transfer, e.g. on unlabeled/augmented data)
                return soft
            return alpha * soft + (1 - alpha) * F.cross_entropy(s_logits, y)

        return loss

    def stages(self) -> list[DistillStage]:
        return [DistillStage(name="kd", loss_fn=self.loss_fn())]
