"""The ``onnxruntime`` backend: the (QDQ) ONNX file *is* the engine; ONNX Runtime runs it.

The engine stage builds nothing: it records which ONNX file deploys, its sha256 and the execution
providers a session actually got after one real inference. Always installed, so ``engine.backend:
auto`` falls back to it; it is the one backend that runs the text student (ONNX Runtime's dynamic
INT8 LSTM, ``DynamicQuantizeLSTM``, is its own op). The runner is :mod:`.runner`.

ONNX Runtime's *quantization* tooling stays in :mod:`edgec.compress` (``quantize``, ``calibrate``,
``ptq_accuracy``, ``int8_cpu``, ``saturation``): it is the post-training INT8 method, whose S8S8 file
TensorRT builds from too, and export, QAT and the text task call it; here it would make the backends
depend on compress and export and those on the backends (an import cycle). What is about *running* a
model in ONNX Runtime lives here.

Example:
    >>> from edgec.backends import get_backend
    >>> get_backend("onnxruntime").tasks
    ('images', 'text')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from edgec.backends.base import Backend, checked_options

if TYPE_CHECKING:
    from edgec.backends.runner import Runner

__all__ = ["OnnxRuntimeBackend"]


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on the CPU (or CUDA where its GPU build is installed)."""

    name = "onnxruntime"
    auto_priority = 0
    tasks = ("images", "text")
    suffixes = (".onnx",)
    title = "ONNX models"

    def open(self, model: str | os.PathLike[str] | Any, **options: Any) -> Runner:
        """An :class:`~edgec.backends.onnxruntime.runner.OnnxRuntimeRunner` (``providers``,
        ``intra_op_threads``, ``inter_op_threads``, ``graph_optimization_level``)."""
        from edgec.backends.onnxruntime.runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(model, **checked_options(OnnxRuntimeRunner, options))

    def build_options(self, spec: Any) -> dict[str, Any]:
        return self.thread_options(spec.intra_op_threads)

    def thread_options(self, threads: int | None) -> dict[str, Any]:
        return {"intra_op_threads": threads} if threads else {}

    def bench_options(self, device: str, threads: int | None, providers: Sequence[str] | None = None,
                      stream: Any = None) -> dict[str, Any]:
        """``["cpu"]`` on the CPU; on a GPU CUDA then CPU, sharing ``stream`` (so CUDA events on it
        bracket ORT's kernels); ORT's TensorRT provider only when named in ``providers``."""
        chosen: list[Any] = list(providers) if providers else (["cpu"] if device == "cpu" else ["cuda", "cpu"])
        if stream is not None:  # ORT ignores handle 0, hence CudaEventClock's own stream
            chosen = [("CUDAExecutionProvider", {"user_compute_stream": str(stream.cuda_stream)})
                      if isinstance(p, str) and p.lower() in ("cuda", "cudaexecutionprovider") else p
                      for p in chosen]
        return {"providers": chosen, **self.thread_options(threads)}


BACKEND = OnnxRuntimeBackend()
