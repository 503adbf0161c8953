"""Knowledge distillation as pluggable methods, all trained by the one loop (:func:`edgec.train.fit`).

A method is looked up by name in a registry and turns (teacher, student, hyper-parameters) into a
list of :class:`DistillStage` s; :func:`distill` runs them in order with ``fit``. Built in:

- ``kd``: logit KD (Hinton et al.), one stage (this module).
- ``fitnets``: Romero et al.'s hint training (:mod:`edgec.compress.hints`), two stages:
    stage "hints": model = a wrapper holding the student and the regressor (so both are
        checkpointed), params = the student's layers up to the guided layer + the regressor,
        loss = 1/2 ||hint - regressor(guided)||^2, monitor = that loss on the validation data
    stage "kd":    model = the student, loss = CE + lambda * H(P_T^tau, P_S^tau), lambda annealed
        per epoch through ``on_epoch_start``
- ``features``: logit KD + weighted MSE at several (teacher, student) layer pairs, one stage.

A method that needs input shapes (to size regressors) defines ``bind(sample, seed)``;
:func:`distill` calls it with a few training inputs before ``stages()``.

Why stages rather than a list of names: a stage must say *which module* is trained (a wrapper in
FitNets' first stage), *which parameters*, with *which loss* and *which settings*; names alone
would make :func:`distill` know every method's internals.

Example:
    >>> result = distill(student, teacher, (x, y), (xv, yv), TrainConfig(epochs=20),
    ...                  method="kd", method_params={"temperature": 4.0, "alpha": 0.9})
    >>> result.best_val_accuracy
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgec.errors import ModelError, RecipeError
from edgec.train import LossFn, TrainConfig, TrainResult, fit
from edgec.train.checkpoint import CHECKPOINT_NAME
from edgec.train.evaluate import as_tensors, device_of


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


_METHODS: dict[str, Callable[..., DistillMethod]] = {}


def register_distill_method(name: str) -> Callable[[Callable[..., DistillMethod]],
                                                   Callable[..., DistillMethod]]:
    """Class/factory decorator: make a method available to recipes as ``distill.method: name``.

    Its keyword parameters (after teacher and student) are the ones a recipe may set.

    Example:
        >>> @register_distill_method("fitnets")
        ... class FitNets:
        ...     def __init__(self, teacher, student, hint_layer: str = "", guided_layer: str = ""): ...
    """
    def decorator(factory: Callable[..., DistillMethod]) -> Callable[..., DistillMethod]:
        if _METHODS.get(name, factory) is not factory:
            raise ValueError(f"distillation method {name!r} is registered twice")
        _METHODS[name] = factory
        return factory
    return decorator


def available_distill_methods() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_METHODS)


def _unknown(what: str, value: str, valid: list[str]) -> RecipeError:
    close = difflib.get_close_matches(value, valid, n=1)
    hint = (f"did you mean '{close[0]}'? " if close else "") + f"valid: {', '.join(map(repr, valid)) or '(none)'}"
    return RecipeError(f"unknown {what} {value!r}", hint=hint)


def make_distill_method(name: str, teacher: nn.Module, student: nn.Module,
                        **params: Any) -> DistillMethod:
    """Build the registered method ``name``; unknown names/params are :class:`RecipeError` s.

    Example:
        >>> method = make_distill_method("kd", teacher, student, temperature=2.0)
        >>> fit(student, train, val, cfg, loss_fn=method.loss_fn())
    """
    factory = _METHODS.get(name)
    if factory is None:
        raise _unknown("distillation method", name, available_distill_methods())
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


def stage_checkpoint_name(stage: str, last: bool) -> str:
    """The checkpoint file of a stage inside distill's ``workdir``: files, not folders, so a
    pipeline can list them as scratch (``checkpoint.pt`` for the last stage, else
    ``checkpoint-<stage>.pt``, e.g. FitNets' ``checkpoint-hints.pt``).

    Example:
        >>> stage_checkpoint_name("hints", last=False)
        'checkpoint-hints.pt'
    """
    return CHECKPOINT_NAME if last else f"checkpoint-{stage}.pt"


def _trains_student(model: nn.Module | None, student: nn.Module) -> bool:
    return model is None or model is student or getattr(model, "student", None) is student


def distill(student: nn.Module, teacher: nn.Module, train: tuple[np.ndarray, np.ndarray],
            val: tuple[np.ndarray, np.ndarray], config: TrainConfig, *, method: str = "kd",
            method_params: dict[str, Any] | None = None, workdir: str | Path | None = None,
            progress: bool = True) -> TrainResult:
    """Train ``student`` from ``teacher`` with a registered method; returns the last stage's result.

    The teacher must live on the student's device; it is left in the train/eval mode it came in.
    With ``workdir``, the last stage checkpoints to ``workdir/checkpoint.pt`` and earlier stages
    to ``workdir/checkpoint-<stage name>.pt`` (see :func:`stage_checkpoint_name`); a checkpoint
    resumes only under the same config and method hyper-parameters. The returned result's
    ``model`` is always the plain student (regressors and wrappers are dropped).

    Example:
        >>> result = distill(student, teacher, (x, y), (xv, yv), TrainConfig(epochs=10),
        ...                  method_params={"temperature": 4.0}, workdir="runs/student")
    """
    m = make_distill_method(method, teacher, student, **(method_params or {}))
    t_dev, s_dev = device_of(teacher), device_of(student)
    if t_dev != s_dev:
        raise ModelError(f"the teacher is on {t_dev} but the student on {s_dev}",
                         hint="move both to the same device before distilling")
    bind = getattr(m, "bind", None)
    if bind is not None:  # sizes regressors from real inputs: (2, C, H, W) is enough
        x_sample, _ = as_tensors((train[0][:2], train[1][:2]), "training")
        bind(x_sample.to(s_dev), seed=config.seed)
    stages = m.stages()
    if not stages or not _trains_student(stages[-1].model, student):
        raise ValueError(f"distillation method {method!r} must end with a stage that trains the student")
    resume_key = json.dumps({"method": m.name, **m.hyperparameters()}, sort_keys=True)
    modes = [(mod, mod.training) for mod in teacher.modules()]  # per module: some may be frozen
    teacher.eval()
    result: TrainResult | None = None
    try:
        for i, stage in enumerate(stages):
            last = i == len(stages) - 1
            label = f"distill {m.name}" + (f"/{stage.name}" if len(stages) > 1 else "")
            result = fit(student if stage.model is None else stage.model, train, val,
                         dataclasses.replace(config, **stage.config_overrides),
                         loss_fn=stage.loss_fn, params=stage.params, workdir=workdir,
                         checkpoint_name=stage_checkpoint_name(stage.name, last),
                         description=label, progress=progress, monitor=stage.monitor,
                         on_epoch_start=stage.on_epoch_start,
                         resume_key=f"{resume_key}/{stage.name}")
    finally:
        for mod, training in modes:
            mod.training = training
    assert result is not None
    result.model = student.eval()  # a wrapper's best weights live in the student it holds
    return result


# The built-in multi-layer methods register themselves on import ("fitnets", "features"). At the
# end of the module: hints.py imports the names defined above.
from edgec.compress import hints as _hints  # noqa: E402,F401
