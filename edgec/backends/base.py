"""The :class:`Backend` protocol: everything edgec knows about one runtime, in one object.

A backend is what ``engine.backend`` names (or what ``open_runner(runtime=...)`` runs): it says whether
this machine can run it (:meth:`Backend.check` / :meth:`Backend.available`), what keys its engine
stage (:meth:`Backend.stage_config`), how the engine stage builds it (:meth:`Backend.build`), how to
open a model file in it (:meth:`Backend.open`), which options its runner takes from the recipe
(:meth:`Backend.runner_options`), which model the built engine adds to a build's models
(:meth:`Backend.engine_model`) and what the report says about it (:meth:`Backend.report_lines`).
The stages, the report and ``open_runner`` call these methods; none of them tests a backend's name.

Each backend lives in its own folder (``edgec/backends/<name>/``: the object in ``__init__.py``, its
runner and tooling beside it) and is registered in :mod:`edgec.backends.registry`. Importing a
backend object is cheap: the runtime it wraps (onnxruntime, tensorrt, pycuda, torch) is imported
when a runner is opened or an engine built.

Example:
    >>> from edgec.backends import get_backend
    >>> b = get_backend("onnxruntime")
    >>> b.suffixes, b.thread_options(2)
    (('.onnx',), {'intra_op_threads': 2})
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgec.errors import EdgecError

if TYPE_CHECKING:
    import numpy as np

    from edgec.artifacts import Artifact
    from edgec.backends.runner import Runner

__all__ = ["Backend", "EngineJob", "cuda_device", "no_gpu", "checked_options"]


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


def no_gpu(backend: str) -> EdgecError:
    """The error for ``engine.backend: <backend>`` on a machine where torch sees no CUDA GPU."""
    return EdgecError(f"engine.backend: {backend} needs a CUDA GPU, and torch sees none here",
                      hint="build on the target (a Jetson or a CUDA machine with a CUDA build of torch), "
                           "or set engine.backend: onnxruntime (or auto) on this machine")


def checked_options(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` if ``cls.__init__`` takes them all; else a clear error listing the ones it takes."""
    params = inspect.signature(cls.__init__).parameters
    accepted = [n for n in params if n not in ("self", "module", "path")]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise EdgecError(f"{cls.__name__} does not take option(s) {', '.join(unknown)}",
                         hint=f"its options are: {', '.join(accepted)}")
    return dict(options)


@dataclass(frozen=True)
class EngineJob:
    """What the engine stage hands a backend's :meth:`Backend.build`.

    ``onnx``: the deployable ONNX chosen for this backend (:meth:`Backend.deployed_onnx`);
    ``student``: the FP32 student ``.safetensors`` (set for backends with ``needs_student``);
    ``sample``: one real test input; ``spec``: the recipe's ``engine`` section; ``out``: the stage's folder.
    """

    onnx: Path
    student: Path | None
    sample: np.ndarray
    spec: Any
    out: Path


class Backend:
    """One runtime behind edgec's stages (subclass it, override what differs, register one instance).

    Attributes:
        name: what ``engine.backend`` and ``open_runner(runtime=...)`` call it.
        engine: selectable as ``engine.backend`` (torch runs models but builds no engine).
        auto_priority: ``engine.backend: auto`` takes the available engine backend with the highest
            priority; None: never chosen by ``auto``.
        tasks: the tasks (``images``, ``text``) whose deployable model it can run.
        needs_gpu: runs only where torch sees a CUDA GPU (the GPU then keys the engine stage).
        needs_student: builds from the FP32 student ``.safetensors`` (the engine stage gets it as a parent).
        suffixes: model files it is the default runtime for (``open_runner(runtime="auto")``).
        also_opens: model files it opens when asked by name (the kernels run a ``.safetensors`` student).
        opens_modules: runs an in-memory ``torch.nn.Module``.
        quantized_file_metric: the quantize stage's metric naming the ONNX file this backend deploys.
        verify_against: the models its engine is compared with in verify (the first one built).
        report_keys: engine-stage metrics copied into ``report.json``'s ``engine`` section.
        other_runtimes_hint: what to tell someone asking another runtime to open this backend's files.
        title: what it runs, in words ("TensorRT engines"), for messages.
    """

    name: ClassVar[str] = ""
    engine: ClassVar[bool] = True
    auto_priority: ClassVar[int | None] = None
    tasks: ClassVar[tuple[str, ...]] = ("images",)
    needs_gpu: ClassVar[bool] = False
    needs_student: ClassVar[bool] = False
    suffixes: ClassVar[tuple[str, ...]] = ()
    also_opens: ClassVar[tuple[str, ...]] = ()
    opens_modules: ClassVar[bool] = False
    quantized_file_metric: ClassVar[str] = "file"
    verify_against: ClassVar[tuple[str, ...]] = ()
    report_keys: ClassVar[tuple[str, ...]] = ()
    other_runtimes_hint: ClassVar[str] = ""
    title: ClassVar[str] = ""

    # --- can it run here --------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise a clear :class:`EdgecError` (the extra to install, the missing GPU) when it cannot run here."""

    def available(self) -> bool:
        """Whether :meth:`check` passes; ``auto`` uses it and never fails."""
        try:
            self.check()
        except EdgecError:
            return False
        return True

    def recipe_problem(self, recipe: Any) -> str | None:
        """What in a recipe this backend cannot run (checked when the recipe is read), or None."""
        return None

    # --- the engine stage -------------------------------------------------------------------------------

    def deployed_onnx(self, source: Artifact) -> str:
        """The file of ``source`` (the quantize or export artifact) this backend deploys."""
        if source.stage != "quantize":
            return "model.onnx"
        return source.metrics.get(self.quantized_file_metric) or source.metrics["file"]

    def stage_config(self, spec: Any, source: Artifact) -> dict[str, Any]:
        """The engine stage's cache config: the recipe's ``engine`` section, the backend name and,
        for GPU backends, the GPU (an engine is never reused on another GPU)."""
        config: dict[str, Any] = {"engine": spec.model_dump(mode="json"), "backend": self.name}
        gpu = cuda_device() if self.needs_gpu else None
        if gpu is not None:
            config["target"] = {"gpu": list(gpu)}
        return config

    def build(self, job: EngineJob) -> dict[str, Any]:
        """Prepare the deployable runtime, run ``job.sample`` through it once, and describe it.

        Returns the engine stage's metrics beyond ``backend``/``model``/``model_sha256`` (``runner``:
        the runner's description, plus what the backend built). A backend that writes its own
        ``engine.json`` into ``job.out`` (TensorRT's plan manifest) keeps it; else the stage writes one.
        """
        with self.open(job.onnx, **self.build_options(job.spec)) as runner:
            runner.infer(job.sample)
            return {"runner": runner.describe()}

    def build_options(self, spec: Any) -> dict[str, Any]:
        """Runner options the engine stage opens the model with (default: :meth:`runner_options`)."""
        return self.runner_options(spec)

    # --- running models ---------------------------------------------------------------------------------

    def open(self, model: str | os.PathLike[str] | Any, **options: Any) -> Runner:
        """A :class:`~edgec.backends.runner.Runner` for ``model`` (a file, or a module where ``opens_modules``)."""
        raise NotImplementedError(f"backend {self.name} opens no models")

    def check_module(self, model: Any) -> None:
        """Raise :class:`~edgec.errors.ModelError` when ``model`` is no in-memory model this backend runs."""

    def runner_options(self, spec: Any) -> dict[str, Any]:
        """Runner options the recipe's ``engine`` section sets for this backend (verify, bench)."""
        return {}

    def thread_options(self, threads: int | None) -> dict[str, Any]:
        """The runner option that sets ``threads`` CPU threads; {} where the runtime has none."""
        return {}

    def bench_options(self, device: str, threads: int | None, providers: Sequence[str] | None = None,
                      stream: Any = None) -> dict[str, Any]:
        """Runner options for ``edgec bench --device`` (``cpu``, ``cuda``, ``jetson``); a GPU backend
        refuses ``cpu``. ``stream``: the CUDA stream the timing clock records on (ONNX Runtime shares it)."""
        if self.needs_gpu and device == "cpu":
            raise EdgecError(f"{self.title} run on a CUDA GPU, not with --device cpu",
                             hint="use --device cuda (or --device jetson on a Jetson)")
        return self.thread_options(threads)

    # --- what a build reports ---------------------------------------------------------------------------

    def engine_model(self, engine: Artifact, student: Path) -> Path | None:
        """The file the built engine runs from (a model of its own in verify/bench/report), or None
        when the engine *is* an ONNX file already among the build's models."""
        return None

    def report_lines(self, engine: dict[str, Any]) -> list[str]:
        """``report.md`` lines about the built engine (``engine``: report.json's engine section)."""
        return []

    def __repr__(self) -> str:
        return f"<backend {self.name}>"
