"""Run an ONNX file (float or QDQ INT8) with ONNX Runtime.

ORT silently falls back to the next provider when one fails to initialise (a missing CUDA or
TensorRT library only produces a log line), so :meth:`OnnxRuntimeRunner.describe` records the
providers the session *actually* uses, not the ones asked for: a benchmark result must say what ran.

Example:
    >>> from edgec.backends.onnxruntime.runner import OnnxRuntimeRunner
    >>> with OnnxRuntimeRunner("m.onnx", providers=["cpu"]) as r:     # doctest: +SKIP
    ...     logits = r.infer(x)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from edgec.errors import EdgecError, ModelError
from edgec.backends.runner import Runner, TensorSpec, prepare_feeds

__all__ = ["OnnxRuntimeRunner", "default_providers", "PROVIDER_PREFERENCE"]

# Fastest first. Only these are picked by default; others must be asked for by name. ORT's TensorRT
# provider is deliberately opt-in (providers=["tensorrt", ...]): creating a session with it builds a
# TensorRT engine, which can take minutes and surprise a user who only wanted to run a model.
PROVIDER_PREFERENCE = ("CUDAExecutionProvider", "CPUExecutionProvider")

_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}

_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",  # ORT >= 1.22 only; filtered below
    "all": "ORT_ENABLE_ALL",
}

# ONNX element types as ORT names them ("tensor(float)") -> numpy dtype names.
_ORT_TYPES = {
    "float": "float32", "float16": "float16", "double": "float64", "bfloat16": "bfloat16",
    "int8": "int8", "uint8": "uint8", "int16": "int16", "uint16": "uint16", "int32": "int32",
    "uint32": "uint32", "int64": "int64", "uint64": "uint64", "bool": "bool", "string": "object",
}

# What ORT raises for a file that is not a loadable model (bad protobuf, bad graph, unknown op).
_LOAD_ERRORS = tuple(
    getattr(ort_errors, n)
    for n in ("InvalidProtobuf", "Fail", "InvalidGraph", "NoSuchFile", "NotImplemented")
    if hasattr(ort_errors, n)
)

ProviderArg = str | tuple[str, dict[str, Any]]


def default_providers() -> list[str]:
    """The available providers in :data:`PROVIDER_PREFERENCE` order (``["CPUExecutionProvider"]``).

    Example:
        >>> "CPUExecutionProvider" in default_providers()
        True
    """
    available = ort.get_available_providers()
    return [p for p in PROVIDER_PREFERENCE if p in available]


class OnnxRuntimeRunner(Runner):
    """An ``onnxruntime.InferenceSession`` on ``path``.

    ``providers``: names ("CUDAExecutionProvider" or the short "cuda", "tensorrt", "cpu") or
    ``(name, options)`` pairs; default :func:`default_providers`. Thread counts of ``None`` leave
    ORT's defaults (intra-op = physical cores). ``graph_optimization_level``: "disable", "basic",
    "extended", "layout" or "all".

    Example:
        >>> OnnxRuntimeRunner("m.onnx", providers=["cpu"]).describe()["providers"]  # doctest: +SKIP
        ['CPUExecutionProvider']
    """

    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: Sequence[ProviderArg] | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        graph_optimization_level: str = "all",
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"ONNX file not found: {self.path}", hint="check the path")
        self.providers_requested = _resolve_providers(providers)
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.graph_optimization_level = graph_optimization_level
        options = _session_options(intra_op_threads, inter_op_threads, graph_optimization_level)
        try:
            self.session: ort.InferenceSession | None = ort.InferenceSession(
                str(self.path), sess_options=options, providers=self.providers_requested
            )
        except _LOAD_ERRORS as exc:
            raise ModelError(
                f"ONNX Runtime cannot load {self.path}: {_first_line(exc)}",
                hint="the file is corrupt, truncated or not a valid ONNX model; re-export it",
            ) from exc
        self.inputs = [_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_spec(a) for a in self.session.get_outputs()]
        self._output_names = [s.name for s in self.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ``session.run`` on named inputs; returns all outputs by name.

        Example:
            >>> runner.run({"input": x})["logits"].shape        # doctest: +SKIP
            (8, 10)
        """
        if self.session is None:
            raise EdgecError("this OnnxRuntimeRunner is closed", hint="open a new runner")
        ready = prepare_feeds(self.inputs, feeds)
        try:
            values = self.session.run(self._output_names, ready)
        except ort_errors.InvalidArgument as exc:  # wrong rank/shape for the model's inputs
            shapes = {k: v.shape for k, v in ready.items()}
            raise ModelError(
                f"{self.path.name} rejected inputs {shapes}: {_first_line(exc)}",
                hint="expected " + ", ".join(f"{s.name}{list(s.shape)}" for s in self.inputs),
            ) from exc
        return dict(zip(self._output_names, values))

    def describe(self) -> dict[str, Any]:
        """ORT version, providers actually used, thread settings, optimisation level, model I/O.

        Example:
            >>> OnnxRuntimeRunner("m.onnx").describe()["version"]        # doctest: +SKIP
            '1.31.1'
        """
        used = self.session.get_providers() if self.session is not None else []
        gpu = any(p in used for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
        return {
            "runtime": self.runtime,
            "version": ort.__version__,
            "model": str(self.path),
            "device": "cuda" if gpu else "cpu",
            "providers": used,
            "providers_requested": [p if isinstance(p, str) else p[0]
                                    for p in self.providers_requested],
            # None = ORT's default (intra-op: one thread per physical core).
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "cpu_count": os.cpu_count(),
            "graph_optimization_level": self.graph_optimization_level,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    def close(self) -> None:
        """Drop the session so ORT frees its arenas (and GPU memory)."""
        self.session = None


def _resolve_providers(providers: Sequence[ProviderArg] | None) -> list[ProviderArg]:
    if providers is None:
        return default_providers()
    available = ort.get_available_providers()
    resolved: list[ProviderArg] = []
    for p in providers:
        name, opts = (p, None) if isinstance(p, str) else (p[0], p[1])
        name = _ALIASES.get(name.lower(), name)
        if name not in available:
            raise EdgecError(
                f"ONNX Runtime provider '{name}' is not available here; "
                f"available: {', '.join(available)}",
                hint="CUDA/TensorRT providers need the onnxruntime-gpu package (on Jetson, "
                "NVIDIA's Jetson build) instead of onnxruntime; or leave providers unset",
            )
        resolved.append(name if opts is None else (name, dict(opts)))
    if not resolved:
        raise EdgecError("providers is empty", hint="leave it unset to use the available ones")
    return resolved


def _session_options(intra: int | None, inter: int | None, level: str) -> ort.SessionOptions:
    levels = {k: getattr(ort.GraphOptimizationLevel, v) for k, v in _OPT_LEVELS.items()
              if hasattr(ort.GraphOptimizationLevel, v)}
    if level not in levels:
        raise EdgecError(
            f"unknown graph_optimization_level '{level}'", hint=f"use one of: {', '.join(levels)}"
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[level]
    for name, value in (("intra_op_threads", intra), ("inter_op_threads", inter)):
        if value is not None and value < 1:
            raise EdgecError(f"{name} must be >= 1, got {value}", hint="or None for ORT's default")
    if intra is not None:
        options.intra_op_num_threads = intra
    if inter is not None:
        options.inter_op_num_threads = inter
    return options


def _spec(arg: Any) -> TensorSpec:
    # ORT shapes hold ints for fixed dims, strings for named dynamic dims, None for unnamed ones.
    kind = arg.type.removeprefix("tensor(").removesuffix(")")
    shape = tuple(d if isinstance(d, (int, str)) or d is None else str(d) for d in arg.shape)
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(kind, kind))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
