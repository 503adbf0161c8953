"""Knowledge distillation as pluggable methods, all trained by the one loop (:func:`edgec.train.fit`).

A method is looked up by name in a registry and turns (teacher, student, hyper-parameters) into a
list of :class:`DistillStage` s; :func:`distill` runs them in order with ``fit``. Built in:

- ``kd``: logit KD (Hinton et al.), one stage (:mod:`edgec.compress.distill_methods`, with the
  registry and the method protocol).
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

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgec.compress import hints  # noqa: F401  (registers the built-in multi-layer methods)
from edgec.compress.distill_methods import (METHODS, DistillMethod, DistillStage, LogitKD, available_distill_methods,
                                            kd_loss, make_distill_method, register_distill_method)
from edgec.errors import ModelError, RecipeError
from edgec.train import TrainConfig, TrainResult, fit
from edgec.train.checkpoint import CHECKPOINT_NAME
from edgec.train.evaluate import as_tensors, device_of

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
                         config.replace(**stage.config_overrides),
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



__all__ = ["METHODS", "DistillMethod", "DistillStage", "LogitKD", "available_distill_methods", "distill",
           "kd_loss", "make_distill_method", "register_distill_method", "stage_checkpoint_name"]
