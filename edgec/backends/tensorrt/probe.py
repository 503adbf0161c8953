"""``import tensorrt`` with a clear error: the extra to install, or why an installed TensorRT fails to load.

Example:
    >>> trt = import_tensorrt("building TensorRT engines")   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from edgec.errors import EdgecError, MissingDependencyError

__all__ = ["import_tensorrt"]


def import_tensorrt(purpose: str) -> Any:
    """``import tensorrt`` or a clear error: the extra to install, or why an installed one fails.

    Example:
        >>> trt = import_tensorrt("building TensorRT engines")   # doctest: +SKIP
    """
    if importlib.util.find_spec("tensorrt") is None:
        raise MissingDependencyError("tensorrt", "trt", purpose)
    try:
        return importlib.import_module("tensorrt")
    except (ImportError, OSError) as exc:  # a wheel without its libnvinfer, a CUDA mismatch...
        raise EdgecError(f"{purpose}: TensorRT is installed but cannot be imported ({exc})",
                         hint="reinstall it with pip install 'edgec[trt]' (on Jetson, use JetPack's "
                              "TensorRT); `edgec doctor` shows what it finds") from exc
