"""The ``tensorrt`` backend: ``model.plan`` + ``engine.json`` built from the QDQ ONNX, run on a CUDA GPU.

Its folder holds everything TensorRT: the builder (:mod:`.builder`, with :mod:`.config` for profiles,
DLA and the timing cache, :mod:`.logger`, :mod:`.inspector`, :mod:`.sparsity`), the engine manifest
(:mod:`.manifest`), the runner (:mod:`.runner`), ``edgec engine MODEL.onnx`` (:mod:`.from_onnx`) and
``import tensorrt`` with a clear error (:mod:`.probe`). Dependencies go one way: the runner reads the
manifest and the logger, the builder uses those and its own helpers, nothing imports the builder back.
Needs ``edgec[trt]`` and a CUDA GPU; ``engine.backend: auto`` picks it where both are there.

Example:
    >>> from edgec.backends import get_backend
    >>> get_backend("tensorrt").verify_against[0]
    'student_int8'
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.backends.base import Backend, EngineJob, checked_options, cuda_device, no_gpu
from edgec.backends.tensorrt.builder import BuildSettings, build_engine
from edgec.backends.tensorrt.manifest import engine_key
from edgec.backends.tensorrt.probe import import_tensorrt
from edgec.backends.tensorrt.runner import TensorRTRunner
from edgec.errors import MissingDependencyError

if TYPE_CHECKING:
    from edgec.artifacts import Artifact
    from edgec.backends.runner import Runner

__all__ = ["TensorRTBackend"]


class TensorRTBackend(Backend):
    """TensorRT 10 (JetPack 6) and 11 (desktop): a plan per (ONNX, TensorRT version, GPU, build settings)."""

    name = "tensorrt"
    auto_priority = 10
    needs_gpu = True
    title = "TensorRT engines"
    suffixes = (".plan", ".engine")
    quantized_file_metric = "tensorrt_file"  # PTQ: the S8S8 file is TensorRT's
    verify_against = ("student_int8", "student_lowbit", "student_fp32_onnx")
    report_keys = ("tensorrt", "gpu", "build", "layers")

    def check(self) -> None:
        """TensorRT must import (extra ``trt``) and torch must see a CUDA GPU."""
        import_tensorrt("engine.backend: tensorrt")
        if cuda_device() is None:
            raise no_gpu(self.name)

    def available(self) -> bool:
        """find_spec and the GPU first (cheap), then the import itself (``auto`` never fails)."""
        if importlib.util.find_spec("tensorrt") is None or cuda_device() is None:
            return False
        return super().available()

    def recipe_problem(self, recipe: Any) -> str | None:
        """A TensorRT engine only runs batches inside its optimisation profile."""
        if recipe.bench.enabled and recipe.bench.batch_size > recipe.engine.max_batch:
            return (f"bench.batch_size {recipe.bench.batch_size} > engine.max_batch {recipe.engine.max_batch}: "
                    "the TensorRT engine cannot run it; raise engine.max_batch or lower bench.batch_size")
        return None

    def stage_config(self, spec: Any, source: Artifact) -> dict[str, Any]:
        """Adds the engine key over (ONNX sha256, TensorRT version, GPU name + compute capability, build
        settings), so an engine is never reused across any of them."""
        config = {"engine": spec.model_dump(mode="json"), "backend": self.name}
        gpu = cuda_device()
        if gpu is None:
            return config
        trt = import_tensorrt("engine.backend: tensorrt")
        onnx_sha = source.manifest["files"][self.deployed_onnx(source)]["sha256"]
        config["engine_key"] = engine_key(onnx_sha, trt.__version__, gpu, BuildSettings.from_spec(spec).to_dict())
        config["target"] = {"tensorrt": trt.__version__, "gpu": list(gpu)}
        return config

    def build(self, job: EngineJob) -> dict[str, Any]:
        """Builds ``model.plan`` + ``engine.json`` (the plan's manifest) and runs the plan once."""
        built = build_engine(job.onnx, job.out, BuildSettings.from_spec(job.spec))
        with self.open(built.plan, **self.runner_options(job.spec)) as runner:
            runner.infer(job.sample)
            info: dict[str, Any] = {"runner": runner.describe()}
        info.update(engine_file=built.plan.name, **{k: built.manifest[k] for k in (
            "key", "tensorrt", "gpu", "build", "profile", "sparse_weights", "dla", "layers")})
        return info

    def open(self, model: str | os.PathLike[str] | Any, **options: Any) -> Runner:
        """A :class:`~edgec.backends.tensorrt.runner.TensorRTRunner` (options ``device``, ``cuda_graph``)."""
        # find_spec first: a clear "install edgec[trt]" before anything else is tried.
        if importlib.util.find_spec("tensorrt") is None:
            raise MissingDependencyError("tensorrt", "trt", "running TensorRT engines")
        return TensorRTRunner(model, **checked_options(TensorRTRunner, options))

    def runner_options(self, spec: Any) -> dict[str, Any]:
        return {"cuda_graph": spec.cuda_graph}

    def engine_model(self, engine: Artifact, student: Path) -> Path | None:
        return engine.file(engine.metrics["engine_file"])

    def report_lines(self, engine: dict[str, Any]) -> list[str]:
        layers = engine.get("layers") or {}
        line = (f"- TensorRT {engine.get('tensorrt')} engine for {(engine.get('gpu') or {}).get('name')}"
                f" ({'strongly typed' if (engine.get('build') or {}).get('strongly_typed') else 'weakly typed'})")
        if layers.get("detailed"):
            line += (f": {layers['int8']} INT8 / {layers['fp16']} FP16 / {layers['fp32']} FP32 layers "
                     f"({layers['int8_fraction']:.0%} INT8), {layers['fallback_count']} fell back from INT8")
        return [line]


BACKEND = TensorRTBackend()
