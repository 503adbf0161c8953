"""Engine backends: what ``engine.backend`` turns the deployable ONNX into, and where it can run.

=============  ====================================================  =====================================
backend        the engine stage produces                             needs
=============  ====================================================  =====================================
onnxruntime    nothing new: the (QDQ) ONNX file *is* the engine      onnxruntime (always installed)
tensorrt       ``model.plan`` + ``engine.json`` (:mod:`.tensorrt`)   ``edgec[trt]`` and a CUDA GPU
kernels        the student with edgec's CUDA kernels swapped in      ``edgec[gpu]`` (pycuda) and a CUDA GPU
               (:mod:`.kernels`)
auto           tensorrt where it imports and a GPU is visible, else onnxruntime
=============  ====================================================  =====================================

:func:`resolve_backend` is called at the very start of ``edgec build`` so that a recipe asking for
a backend this machine cannot run fails in a second, not after minutes of training.

Importing this package imports neither torch, tensorrt nor pycuda.

Example:
    >>> resolve_backend("onnxruntime")
    'onnxruntime'
    >>> resolve_backend("auto")          # on a machine without TensorRT or without a GPU
    'onnxruntime'
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from edgec.errors import EdgecError, MissingDependencyError

__all__ = ["BACKENDS", "resolve_backend", "import_tensorrt", "cuda_device", "stage_config"]

BACKENDS = ("auto", "onnxruntime", "tensorrt", "kernels")


def cuda_device() -> tuple[str, str] | None:
    """``(GPU name, compute capability "8.7")`` of CUDA device 0 as torch sees it, or None.

    Example:
        >>> cuda_device()                      # doctest: +SKIP
        ('NVIDIA H100 80GB HBM3', '9.0')
    """
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return torch.cuda.get_device_name(0), f"{major}.{minor}"


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


def _no_gpu(backend: str) -> EdgecError:
    return EdgecError(f"engine.backend: {backend} needs a CUDA GPU, and torch sees none here",
                      hint="build on the target (a Jetson or a CUDA machine with a CUDA build of torch), "
                           "or set engine.backend: onnxruntime (or auto) on this machine")


def resolve_backend(requested: str) -> str:
    """The backend ``engine.backend`` means on this machine; a clear error when it cannot run here.

    ``auto`` -> ``tensorrt`` where ``import tensorrt`` works and torch sees a CUDA GPU, else
    ``onnxruntime``. ``tensorrt`` without TensorRT -> :class:`MissingDependencyError` (extra
    ``trt``); ``tensorrt``/``kernels`` without a GPU -> :class:`EdgecError`; ``kernels`` without
    pycuda -> :class:`MissingDependencyError` (extra ``gpu``).

    Example:
        >>> resolve_backend("tensorrt")        # doctest: +SKIP
        Traceback (most recent call last):
        edgec.errors.MissingDependencyError: engine.backend: tensorrt needs the 'tensorrt' package, ...
    """
    if requested not in BACKENDS:
        raise EdgecError(f"unknown engine backend '{requested}'", hint=f"use one of: {', '.join(BACKENDS)}")
    if requested == "onnxruntime":
        return requested
    if requested == "auto":
        if importlib.util.find_spec("tensorrt") is None or cuda_device() is None:
            return "onnxruntime"
        try:
            import_tensorrt("engine.backend: auto")
        except EdgecError:
            return "onnxruntime"  # auto never fails: a broken TensorRT is for `edgec doctor` to explain
        return "tensorrt"
    if requested == "tensorrt":
        import_tensorrt("engine.backend: tensorrt")
        if cuda_device() is None:
            raise _no_gpu(requested)
        return requested
    if cuda_device() is None:  # kernels
        raise _no_gpu(requested)
    try:
        import pycuda.driver  # noqa: F401
    except ImportError as exc:
        if importlib.util.find_spec("pycuda") is None:
            raise MissingDependencyError("pycuda", "gpu", "engine.backend: kernels") from exc
        raise EdgecError(f"engine.backend: kernels: pycuda is installed but cannot load ({exc})",
                         hint="pycuda needs the CUDA driver (libcuda.so.1); reinstall edgec[gpu] on the "
                              "machine with the GPU") from exc
    return requested


def stage_config(spec: Any, backend: str, source: Any) -> dict[str, Any]:
    """The engine stage's cache config: the recipe's ``engine`` section, the backend and, for
    TensorRT, the engine key over (ONNX sha256, TensorRT version, GPU name + compute capability,
    build settings), so an engine is never reused across any of them; for the kernels, the GPU.

    ``source`` is the artifact holding the ONNX the engine is built from.

    Example:
        >>> stage_config(recipe.engine, "onnxruntime", arts["quantize"])["backend"]     # doctest: +SKIP
        'onnxruntime'
    """
    config: dict[str, Any] = {"engine": spec.model_dump(mode="json"), "backend": backend}
    gpu = cuda_device() if backend in ("tensorrt", "kernels") else None
    if backend == "tensorrt" and gpu is not None:
        from edgec.engine.manifest import engine_key
        from edgec.engine.tensorrt import BuildSettings

        trt = import_tensorrt("engine.backend: tensorrt")
        name = source.metrics["file"] if source.stage == "quantize" else "model.onnx"
        onnx_sha = source.manifest["files"][name]["sha256"]
        config["engine_key"] = engine_key(onnx_sha, trt.__version__, gpu, BuildSettings.from_spec(spec).to_dict())
        config["target"] = {"tensorrt": trt.__version__, "gpu": list(gpu)}
    elif gpu is not None:
        config["target"] = {"gpu": list(gpu)}
    return config
