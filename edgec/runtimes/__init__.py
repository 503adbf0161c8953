"""Runners: one small interface (:class:`Runner`) over torch, ONNX Runtime, TensorRT and edgec's kernels.

``import edgec.runtimes`` is cheap: it imports numpy only. torch and onnxruntime are imported when
a runner of that kind is opened (or its class is first touched), tensorrt and pycuda only by the
TensorRT runner, so ``edgec doctor`` and the CLI start fast on any machine.

Example:
    >>> from edgec.runtimes import open_runner, accuracy
    >>> with open_runner("runs/digits/model.onnx", intra_op_threads=1) as r:  # doctest: +SKIP
    ...     print(r.describe()["providers"], accuracy(r, x_test, y_test))
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.errors import EdgecError, MissingDependencyError, ModelError
from edgec.runtimes.base import Runner, TensorSpec, accuracy, predict

if TYPE_CHECKING:
    import torch

    from edgec.runtimes.kernels_runner import KernelsRunner
    from edgec.runtimes.onnxruntime_runner import OnnxRuntimeRunner
    from edgec.runtimes.tensorrt_runner import TensorRTRunner
    from edgec.runtimes.torch_runner import TorchRunner

__all__ = [
    "Runner", "TensorSpec", "open_runner", "predict", "accuracy",
    "TorchRunner", "OnnxRuntimeRunner", "TensorRTRunner", "KernelsRunner", "RUNTIMES", "SUFFIXES",
]

RUNTIMES = ("auto", "torch", "onnxruntime", "tensorrt", "kernels")
# File suffix -> the runtime that runs it when runtime="auto".
SUFFIXES = {
    ".onnx": "onnxruntime", ".safetensors": "torch", ".plan": "tensorrt", ".engine": "tensorrt",
}

_LAZY = {
    "TorchRunner": "edgec.runtimes.torch_runner",
    "OnnxRuntimeRunner": "edgec.runtimes.onnxruntime_runner",
    "TensorRTRunner": "edgec.runtimes.tensorrt_runner",
    "KernelsRunner": "edgec.runtimes.kernels_runner",
}


def __getattr__(name: str) -> Any:
    # PEP 562: the runner classes import torch / onnxruntime, so load them on first use only.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgec.runtimes' has no attribute '{name}'")


def open_runner(
    model: str | os.PathLike[str] | torch.nn.Module, runtime: str = "auto", **options: Any
) -> Runner:
    """Open ``model`` (``nn.Module``, ``.onnx``, ``.safetensors``, ``.plan``) in its runtime.

    ``runtime`` forces one of :data:`RUNTIMES`; ``options`` go to the runner's constructor
    (``device``/``threads`` for torch; ``providers``, ``intra_op_threads``, ``inter_op_threads``,
    ``graph_optimization_level`` for onnxruntime; ``device``, ``cuda_graph`` for tensorrt;
    ``device``, ``min_sparsity``, ``bits`` for kernels, which runs an edgec ``.safetensors`` student).

    Example:
        >>> with open_runner("model.onnx", providers=["cpu"]) as r:     # doctest: +SKIP
        ...     logits = r.infer(x)
        >>> open_runner(torch_module, threads=1).runtime                 # doctest: +SKIP
        'torch'
    """
    if runtime not in RUNTIMES:
        close = difflib.get_close_matches(runtime, RUNTIMES, n=1)
        raise ModelError(
            f"unknown runtime '{runtime}'" + (f"; did you mean '{close[0]}'?" if close else ""),
            hint=f"use one of: {', '.join(RUNTIMES)}",
        )
    if not isinstance(model, (str, os.PathLike)):
        return _open_module(model, runtime, options)

    path = Path(model)
    if not path.exists():
        raise ModelError(f"model file not found: {path}", hint="check the path")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ModelError(
            f"cannot tell how to run '{path.name}' (suffix '{suffix or 'none'}')",
            hint=f"supported model files: {', '.join(SUFFIXES)}",
        )
    native = SUFFIXES[suffix]
    if runtime == "kernels" and native == "torch":  # an edgec student, on edgec's CUDA kernels
        from edgec.runtimes.kernels_runner import KernelsRunner

        return KernelsRunner(path, **_checked(KernelsRunner, options))
    if runtime not in ("auto", native):
        raise ModelError(
            f"runtime '{runtime}' cannot run {suffix} files; they run with '{native}'",
            hint=f"use runtime='{native}' or 'auto'"
            + ("; export the model to ONNX first for onnxruntime" if native == "torch" else ""),
        )
    if native == "onnxruntime":
        from edgec.runtimes.onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path, **_checked(OnnxRuntimeRunner, options))
    if native == "torch":
        return _open_safetensors(path, options)
    return _open_tensorrt(path, options)


def _open_module(model: Any, runtime: str, options: dict[str, Any]) -> Runner:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ModelError(
            "open_runner() takes a model file path or a torch.nn.Module, "
            f"got {type(model).__name__}"
        )
    if runtime not in ("auto", "torch"):
        raise ModelError(
            f"runtime '{runtime}' cannot run an in-memory torch module",
            hint="export it to ONNX first (edgec.export), then open the .onnx file",
        )
    from edgec.runtimes.torch_runner import TorchRunner

    return TorchRunner(model, **_checked(TorchRunner, options))


def _open_safetensors(path: Path, options: dict[str, Any]) -> Runner:
    try:
        from edgec.models import load_model
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("edgec.models"):
            raise
        raise EdgecError(
            f"cannot load {path.name}: this edgec has no model registry (edgec.models)",
            hint="reinstall edgec; .safetensors files are loaded through edgec.models",
        ) from exc
    from edgec.runtimes.torch_runner import TorchRunner

    module, spec = load_model(path)
    options = _checked(TorchRunner, options)
    # The registry's spec knows the input shape even when the module itself does not say.
    spec_shape = getattr(spec, "input_shape", None)
    spec_shape = spec_shape() if callable(spec_shape) else spec_shape  # ModelSpec.input_shape()
    own_shape = hasattr(module, "input_shape")
    if "input_shape" not in options and spec_shape is not None and not own_shape:
        options["input_shape"] = tuple(spec_shape)
    return TorchRunner(module, **options)


def _open_tensorrt(path: Path, options: dict[str, Any]) -> Runner:
    # find_spec first: a clear "install edgec[trt]" before anything else is tried.
    if importlib.util.find_spec("tensorrt") is None:
        raise MissingDependencyError("tensorrt", "trt", "running TensorRT engines")
    from edgec.runtimes.tensorrt_runner import TensorRTRunner

    return TensorRTRunner(path, **_checked(TensorRTRunner, options))


def _checked(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """Reject options the runner does not take with a clear error instead of a TypeError."""
    params = inspect.signature(cls.__init__).parameters
    accepted = [n for n in params if n not in ("self", "module", "path")]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise EdgecError(
            f"{cls.__name__} does not take option(s) {', '.join(unknown)}",
            hint=f"its options are: {', '.join(accepted)}",
        )
    return dict(options)
