"""Backends: one folder and one registered :class:`~edgec.backends.base.Backend` per runtime.

=============  ====================================================  =====================================
backend        the engine stage produces                             needs
=============  ====================================================  =====================================
onnxruntime    nothing new: the (QDQ) ONNX file *is* the engine      onnxruntime (always installed)
tensorrt       ``model.plan`` + ``engine.json`` (:mod:`.tensorrt`)   ``edgec[trt]`` and a CUDA GPU
kernels        the student with edgec's CUDA kernels swapped in      ``edgec[gpu]`` (pycuda) and a CUDA GPU
               (:mod:`.kernels`)
torch          no engine: runs ``.safetensors`` models and modules   torch (always installed)
auto           tensorrt where it imports and a GPU is visible, else onnxruntime
=============  ====================================================  =====================================

:func:`resolve_backend` is called at the very start of ``edgec build`` so that a recipe asking for a
backend this machine cannot run fails in a second, not after minutes of training. Every runner
implements :class:`~edgec.backends.runner.Runner`; :func:`open_runner` opens a model in its backend.

Importing this package imports neither torch, onnxruntime, tensorrt nor pycuda.

Example:
    >>> resolve_backend("onnxruntime")
    'onnxruntime'
    >>> get_backend("tensorrt").suffixes
    ('.plan', '.engine')
"""

from __future__ import annotations

from edgec.backends.base import Backend, EngineJob, cuda_device
from edgec.backends.open import open_runner
from edgec.backends.registry import (
    BACKENDS,
    ENGINE_CHOICES,
    RUNTIMES,
    SUFFIXES,
    engine_backends,
    get_backend,
    resolve_backend,
    stage_config,
)
from edgec.backends.runner import Runner, TensorSpec, accuracy, predict

__all__ = ["Backend", "EngineJob", "BACKENDS", "ENGINE_CHOICES", "RUNTIMES", "SUFFIXES", "get_backend",
           "engine_backends", "resolve_backend", "stage_config", "open_runner", "cuda_device",
           "Runner", "TensorSpec", "accuracy", "predict"]
