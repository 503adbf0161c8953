"""``open_runner``: a model file or an ``nn.Module`` opened in the backend that runs it.

The file's suffix chooses the backend (:data:`~edgec.backends.registry.SUFFIXES`, from each backend's ``suffixes``) unless
``runtime`` names one; a backend also opens the files it lists in ``also_opens`` when asked by name.

Example:
    >>> with open_runner("model.onnx", providers=["cpu"]) as r:     # doctest: +SKIP
    ...     logits = r.infer(x)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.backends.registry import BACKENDS, SUFFIXES, get_backend
from edgec.backends.runner import Runner
from edgec.errors import ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["open_runner"]


def open_runner(
    model: str | os.PathLike[str] | torch.nn.Module, runtime: str = "auto", **options: Any
) -> Runner:
    """Open ``model`` (``nn.Module``, ``.onnx``, ``.safetensors``, ``.plan``) in its runtime.

    ``runtime`` forces one of :data:`~edgec.backends.registry.RUNTIMES`; ``options`` go to the runner's
    constructor (``device``/``threads`` for torch; ``providers``, ``intra_op_threads``,
    ``inter_op_threads``, ``graph_optimization_level`` for onnxruntime; ``device``, ``cuda_graph`` for
    tensorrt; ``device``, ``min_sparsity``, ``bits`` for kernels, which runs an edgec ``.safetensors``
    student).

    Example:
        >>> with open_runner("model.onnx", providers=["cpu"]) as r:     # doctest: +SKIP
        ...     logits = r.infer(x)
        >>> open_runner(torch_module, threads=1).runtime                 # doctest: +SKIP
        'torch'
    """
    asked = None if runtime == "auto" else get_backend(runtime)
    if not isinstance(model, (str, os.PathLike)):
        return _open_module(model, runtime, options)

    path = Path(model)
    if not path.exists():
        raise ModelError(f"model file not found: {path}", hint="check the path")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ModelError(f"cannot tell how to run '{path.name}' (suffix '{suffix or 'none'}')",
                         hint=f"supported model files: {', '.join(SUFFIXES)}")
    native = get_backend(SUFFIXES[suffix])
    if asked is not None and asked is not native and suffix not in asked.also_opens:
        raise ModelError(f"runtime '{runtime}' cannot run {suffix} files; they run with '{native.name}'",
                         hint=f"use runtime='{native.name}' or 'auto'"
                         + (f"; {native.other_runtimes_hint}" if native.other_runtimes_hint else ""))
    return (asked or native).open(path, **options)


def _open_module(model: Any, runtime: str, options: dict[str, Any]) -> Runner:
    backend = next(b for _, b in BACKENDS.items() if b.opens_modules)  # torch
    backend.check_module(model)
    if runtime not in ("auto", backend.name):
        raise ModelError(f"runtime '{runtime}' cannot run an in-memory torch module",
                         hint="export it to ONNX first (edgec.export), then open the .onnx file")
    return backend.open(model, **options)

