"""The registered backends, looked up by name; ``engine.backend`` resolved for this machine.

Adding a backend is one folder (``edgec/backends/<name>/``, a :class:`~edgec.backends.base.Backend`
subclass and its runner) plus one line in :data:`BACKENDS` below.

Example:
    >>> resolve_backend("onnxruntime")
    'onnxruntime'
    >>> resolve_backend("auto")          # on a machine without TensorRT or without a GPU
    'onnxruntime'
"""

from __future__ import annotations

from typing import Any

from edgec.backends import kernels, onnxruntime, tensorrt, torch
from edgec.backends.base import Backend
from edgec.errors import EdgecError, ModelError, RecipeError
from edgec.registry import Registry, did_you_mean

__all__ = ["BACKENDS", "get_backend", "engine_backends", "resolve_backend", "stage_config", "ENGINE_CHOICES",
           "RUNTIMES", "SUFFIXES"]


def _unknown(name: str, best: str | None, valid: list[str]) -> EdgecError:
    return ModelError(f"unknown runtime '{name}'" + (f"; did you mean '{best}'?" if best else ""),
                      hint=f"use one of: {', '.join(RUNTIMES)}")


BACKENDS: Registry[Backend] = Registry("backend", error=ModelError, on_unknown=_unknown)
# One line per backend; the order is the order they are listed in (suffixes, help texts).
_REGISTERED = (onnxruntime.BACKEND, torch.BACKEND, tensorrt.BACKEND, kernels.BACKEND)
for _backend in _REGISTERED:
    BACKENDS.register(_backend.name, _backend)

#: What ``open_runner(runtime=...)`` takes, and what ``engine.backend`` takes.
RUNTIMES = ("auto", *(b.name for b in _REGISTERED))
ENGINE_CHOICES = ("auto", *(b.name for b in _REGISTERED if b.engine))
#: File suffix -> the backend that runs it when ``open_runner(runtime="auto")``.
SUFFIXES = {suffix: b.name for b in _REGISTERED for suffix in b.suffixes}


def get_backend(name: str) -> Backend:
    """The backend registered as ``name`` (a clear error naming the closest one otherwise)."""
    return BACKENDS.get(name)


def engine_backends(task: str = "images") -> list[Backend]:
    """The backends ``engine.backend`` can name for ``task``, ``auto``'s preference first."""
    found = [b for b in _REGISTERED if b.engine and task in b.tasks]
    return sorted(found, key=lambda b: -(b.auto_priority if b.auto_priority is not None else -1))


def resolve_backend(requested: str, task: str = "images", reason: str = "") -> str:
    """The backend ``engine.backend`` means on this machine; a clear error when it cannot run here.

    ``auto`` -> the available backend with the highest ``auto_priority`` (TensorRT where it imports
    and torch sees a CUDA GPU, else ONNX Runtime); never fails. A named backend runs its
    :meth:`~edgec.backends.base.Backend.check` (``tensorrt`` without TensorRT ->
    :class:`~edgec.errors.MissingDependencyError`, extra ``trt``; ``tensorrt``/``kernels`` without a
    GPU -> :class:`EdgecError`; ``kernels`` without pycuda -> extra ``gpu``). A backend that cannot run
    ``task``'s model is a :class:`~edgec.errors.RecipeError` (``reason`` says why, e.g. the op it lacks).

    Example:
        >>> resolve_backend("tensorrt")        # doctest: +SKIP
        Traceback (most recent call last):
        edgec.errors.MissingDependencyError: engine.backend: tensorrt needs the 'tensorrt' package, ...
    """
    choices = engine_backends(task)
    if requested == "auto":
        for backend in choices:
            if backend.auto_priority is not None and backend.available():
                return backend.name
        raise EdgecError(f"engine.backend: auto found no backend for the {task} task on this machine",
                         hint="`edgec doctor` shows what is installed")
    if requested not in ENGINE_CHOICES:
        raise EdgecError(f"unknown engine backend '{requested}'",
                         hint=did_you_mean(requested, ENGINE_CHOICES) + f"use one of: {', '.join(ENGINE_CHOICES)}")
    backend = get_backend(requested)
    if backend not in choices:
        able = [b.name for b in choices]
        raise RecipeError(f"engine.backend: {requested} cannot run the {task} student" + (f" ({reason})" if reason else ""),
                          hint=f"set engine.backend: auto or {' or '.join(able)} for {task} recipes")
    backend.check()
    return backend.name


def stage_config(spec: Any, backend: str, source: Any) -> dict[str, Any]:
    """The engine stage's cache config (:meth:`~edgec.backends.base.Backend.stage_config` of ``backend``).

    ``source`` is the artifact holding the ONNX the engine is built from.

    Example:
        >>> stage_config(recipe.engine, "onnxruntime", arts["quantize"])["backend"]     # doctest: +SKIP
        'onnxruntime'
    """
    return get_backend(backend).stage_config(spec, source)
