"""The ``kernels`` backend: the pruned / low-bit FP32 student on edgec's own CUDA kernels.

There is no separate engine file: the "engine" is the student ``.safetensors`` plus the conversion
settings (``engine.min_sparsity``, ``engine.kernel_bits``) that
:class:`~edgec.backends.kernels.runner.KernelsRunner` (:mod:`.runner`) applies when it loads the student
(:func:`edgec.kernels.convert`: ``SparseConv2d`` for sparse convolutions, ``LowBitLinear`` for
low-bit linear layers). The engine stage runs one real inference on the GPU and records which layers
were swapped (:func:`.engine.prepare_kernels_engine`). Needs ``edgec[gpu]`` (pycuda) and a CUDA GPU;
``auto`` never picks it.

Example:
    >>> from edgec.backends import get_backend
    >>> get_backend("kernels").needs_student
    True
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.backends.base import Backend, EngineJob, checked_options, cuda_device, no_gpu
from edgec.errors import EdgecError, MissingDependencyError

if TYPE_CHECKING:
    from edgec.artifacts import Artifact
    from edgec.backends.runner import Runner

__all__ = ["KernelsBackend"]


class KernelsBackend(Backend):
    """edgec's sparse-convolution and low-bit CUDA kernels, launched through pycuda."""

    name = "kernels"
    needs_gpu = True
    title = "edgec CUDA kernels"
    needs_student = True
    also_opens = (".safetensors",)  # an edgec student, on edgec's CUDA kernels
    verify_against = ("student",)
    report_keys = ("swapped",)

    def check(self) -> None:
        """torch must see a CUDA GPU and pycuda must load (extra ``gpu``)."""
        if cuda_device() is None:
            raise no_gpu(self.name)
        try:
            import pycuda.driver  # noqa: F401
        except ImportError as exc:
            if importlib.util.find_spec("pycuda") is None:
                raise MissingDependencyError("pycuda", "gpu", "engine.backend: kernels") from exc
            raise EdgecError(f"engine.backend: kernels: pycuda is installed but cannot load ({exc})",
                             hint="pycuda needs the CUDA driver (libcuda.so.1); reinstall edgec[gpu] on the "
                                  "machine with the GPU") from exc

    def build(self, job: EngineJob) -> dict[str, Any]:
        """Converts the student, runs the sample through it, lists the swapped and kept layers."""
        from edgec.backends.kernels.engine import prepare_kernels_engine

        assert job.student is not None  # needs_student: the engine stage passes it
        return prepare_kernels_engine(job.student, job.sample, **self.runner_options(job.spec))

    def open(self, model: str | os.PathLike[str] | Any, **options: Any) -> Runner:
        """A :class:`~edgec.backends.kernels.runner.KernelsRunner` (``device``, ``min_sparsity``, ``bits``, ``cuda_graph``)."""
        from edgec.backends.kernels.runner import KernelsRunner

        return KernelsRunner(model, **checked_options(KernelsRunner, options))

    def runner_options(self, spec: Any) -> dict[str, Any]:
        from edgec.backends.kernels.engine import runner_options

        return runner_options(spec)

    def engine_model(self, engine: Artifact, student: Path) -> Path | None:
        return student

    def report_lines(self, engine: dict[str, Any]) -> list[str]:
        swapped = engine.get("swapped") or []
        return [f"- edgec CUDA kernels: {len(swapped)} layers swapped ({', '.join(swapped) or 'none'})"]


BACKEND = KernelsBackend()
