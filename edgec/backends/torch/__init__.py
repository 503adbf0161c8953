"""The ``torch`` backend: edgec ``.safetensors`` models and in-memory ``nn.Module``\\ s, run by torch.

It builds no engine (``engine.backend`` never names it): it is the reference every converted model
is checked against, and the runtime of the teacher and the FP32 student in verify and bench.
A ``.safetensors`` file is loaded through the model registry (:func:`edgec.models.load_model`),
whose spec gives the input shape. The runner is :mod:`.runner`.

Example:
    >>> from edgec.backends import get_backend
    >>> get_backend("torch").thread_options(1)
    {'threads': 1}
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from edgec.backends.base import Backend, checked_options
from edgec.errors import ModelError

if TYPE_CHECKING:
    from edgec.backends.runner import Runner

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """torch on the CPU or a GPU (``device``, ``threads``, ``input_shape``, ``input_dtype``)."""

    name = "torch"
    engine = False
    suffixes = (".safetensors",)
    opens_modules = True
    title = "torch models"
    other_runtimes_hint = "export the model to ONNX first for onnxruntime"

    def check_module(self, model: Any) -> None:
        """Refuse an in-memory object that is not a ``torch.nn.Module``."""
        import torch

        if not isinstance(model, torch.nn.Module):
            raise ModelError(f"open_runner() takes a model file path or a torch.nn.Module, got {type(model).__name__}")

    def open(self, model: str | os.PathLike[str] | Any, **options: Any) -> Runner:
        """A :class:`~edgec.backends.torch.runner.TorchRunner` for a module or an edgec ``.safetensors`` file."""
        from edgec.backends.torch.runner import TorchRunner

        options = checked_options(TorchRunner, options)
        if not isinstance(model, (str, os.PathLike)):
            return TorchRunner(model, **options)
        from edgec import models  # torch: loaded when a model is opened, not with edgec.runtimes

        module, spec = models.load_model(model)
        # The registry's spec knows the input shape even when the module itself does not say.
        spec_shape = getattr(spec, "input_shape", None)
        spec_shape = spec_shape() if callable(spec_shape) else spec_shape  # ModelSpec.input_shape()
        if "input_shape" not in options and spec_shape is not None and not hasattr(module, "input_shape"):
            options["input_shape"] = tuple(spec_shape)
        return TorchRunner(module, **options)

    def thread_options(self, threads: int | None) -> dict[str, Any]:
        return {"threads": threads} if threads else {}

    def bench_options(self, device: str, threads: int | None, providers: Any = None, stream: Any = None) -> dict[str, Any]:
        """The device's CUDA GPU or the CPU."""
        return {"device": "cpu" if device == "cpu" else "cuda", **self.thread_options(threads)}


BACKEND = TorchBackend()
