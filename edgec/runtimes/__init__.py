"""Runners: one small interface (:class:`Runner`) over torch, ONNX Runtime, TensorRT and edgec's kernels.

The runners live beside their backends (``edgec/backends/<name>/runner.py``); this module is the
short public name for opening and running models. ``import edgec.runtimes`` is cheap: it imports
numpy only. torch and onnxruntime are imported when a runner of that kind is opened (or its class is
first touched), tensorrt and pycuda only by the TensorRT and kernels runners, so ``edgec doctor`` and
the CLI start fast on any machine.

Example:
    >>> from edgec.runtimes import open_runner, accuracy
    >>> with open_runner("runs/digits/model.onnx", intra_op_threads=1) as r:  # doctest: +SKIP
    ...     print(r.describe()["providers"], accuracy(r, x_test, y_test))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edgec.backends import RUNTIMES, SUFFIXES, open_runner
from edgec.backends.runner import Runner, TensorSpec, accuracy, predict

if TYPE_CHECKING:
    from edgec.backends.onnxruntime.runner import OnnxRuntimeRunner
    from edgec.backends.tensorrt.runner import TensorRTRunner
    from edgec.backends.torch.runner import TorchRunner
    from edgec.backends.kernels.runner import KernelsRunner

__all__ = [
    "Runner", "TensorSpec", "open_runner", "predict", "accuracy",
    "TorchRunner", "OnnxRuntimeRunner", "TensorRTRunner", "KernelsRunner", "RUNTIMES", "SUFFIXES",
]

_LAZY = {
    "TorchRunner": "edgec.backends.torch.runner",
    "OnnxRuntimeRunner": "edgec.backends.onnxruntime.runner",
    "TensorRTRunner": "edgec.backends.tensorrt.runner",
    "KernelsRunner": "edgec.backends.kernels.runner",
}


def __getattr__(name: str) -> Any:
    # PEP 562: the runner classes import torch / onnxruntime, so load them on first use only.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgec.runtimes' has no attribute '{name}'")
