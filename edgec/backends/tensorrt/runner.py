"""Run a TensorRT engine (``model.plan``) with torch-owned CUDA buffers: no pycuda needed.

Loading checks the plan against its ``engine.json`` first (sha256, TensorRT version, GPU: see
:mod:`edgec.backends.tensorrt.manifest`), because deserializing an engine runs code from it. A DLA engine
needs ``runtime.DLA_core`` set before it is deserialized (as trtexec does); the core comes from the
manifest. TensorRT's messages go to edgec's process-wide logger (:mod:`edgec.backends.tensorrt.logger`).
Then, per run (every call's result checked)::

    ctx.set_input_shape(name, shape)                  # within the engine's optimization profile
    ctx.set_tensor_address(name, tensor.data_ptr())   # torch tensors on the GPU, inputs and outputs
    ctx.execute_async_v3(torch.cuda.current_stream().cuda_stream)

Buffers are allocated once per input shape and reused. With ``cuda_graph=True`` the enqueue is
captured once per input shape into a ``torch.cuda.CUDAGraph`` (after one warm run, which lets
TensorRT finish its shape-dependent setup outside the capture) and replayed: that removes the
per-launch CPU overhead that dominates small models at batch 1.

Work runs on torch's *current* stream, so ``edgec bench``'s CUDA-event clock (which makes its own
stream current) times exactly the engine's kernels.

Example:
    >>> with TensorRTRunner("runs/digits/engine-1a2b/model.plan", cuda_graph=True) as r:   # doctest: +SKIP
    ...     logits = r.infer(x)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgec.backends.runner import Runner, TensorSpec, prepare_feeds
from edgec.backends.tensorrt.logger import process_logger, tensorrt_said
from edgec.backends.tensorrt.manifest import check_target, verify_engine
from edgec.backends.tensorrt.probe import import_tensorrt
from edgec.errors import EdgecError, ModelError

__all__ = ["TensorRTRunner", "check_profile", "deserialize_engine", "static_batch_chunks"]


def check_profile(name: str, shape: tuple[int, ...], profile: list[tuple[int, ...]] | None) -> None:
    """ModelError when ``shape`` is outside the ``[min, opt, max]`` shapes an engine was built for.

    Example:
        >>> check_profile("input", (128, 1, 8, 8), [(1, 1, 8, 8), (1, 1, 8, 8), (64, 1, 8, 8)])
        Traceback (most recent call last):
        edgec.errors.ModelError: input 'input' has shape (128, 1, 8, 8), outside the engine's profile ...
    """
    if profile is None:
        return
    lo, _, hi = profile
    if len(shape) != len(lo) or any(not a <= s <= b for s, a, b in zip(shape, lo, hi)):
        raise ModelError(f"input '{name}' has shape {tuple(shape)}, outside the engine's profile "
                         f"{tuple(lo)} .. {tuple(hi)}",
                         hint=f"use a batch between {lo[0]} and {hi[0]}, or rebuild with engine.min_batch / "
                              "engine.max_batch covering it")


def deserialize_engine(trt: Any, data: bytes, manifest: dict[str, Any], path: Path) -> tuple[Any, Any]:
    """``(runtime, engine)`` for verified plan bytes: the runtime gets edgec's logger and, for an engine
    built for DLA, the DLA core named in the manifest before it deserializes.

    Example:
        >>> runtime, engine = deserialize_engine(trt, data, verify_engine(plan, data=data), plan)  # doctest: +SKIP
    """
    logger = process_logger(trt)
    mark = logger.mark()
    runtime = trt.Runtime(logger)
    dla = manifest.get("dla") or {}
    core = dla.get("core", dla.get("requested") if dla.get("used") else None)  # older manifests: requested+used
    if core is not None:
        runtime.DLA_core = int(core)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise ModelError(f"TensorRT could not deserialize {path}" + tensorrt_said(logger, mark),
                         hint="see TensorRT's message above; rebuild the engine on this machine")
    return runtime, engine


def static_batch_chunks(feeds: dict[str, np.ndarray], batch: int) -> list[tuple[dict[str, np.ndarray], int]]:
    """Split ``feeds`` (one batch dimension first) into chunks of exactly ``batch`` rows, zero-padding the
    last; returns ``(chunk, valid rows)`` pairs. For engines with a static batch (DLA).

    Example:
        >>> [valid for _, valid in static_batch_chunks({"x": np.ones((10, 3))}, 4)]
        [4, 4, 2]
    """
    n = next(iter(feeds.values())).shape[0]
    chunks = []
    for start in range(0, n, batch):
        part = {k: v[start:start + batch] for k, v in feeds.items()}
        valid = next(iter(part.values())).shape[0]
        if valid < batch:
            part = {k: np.concatenate([v, np.zeros((batch - valid, *v.shape[1:]), v.dtype)]) for k, v in part.items()}
        chunks.append((part, valid))
    return chunks


def _spec_shape(dims: Any) -> tuple[int | str | None, ...]:
    dims = [int(d) for d in dims]
    return tuple(("batch" if i == 0 else None) if d < 0 else d for i, d in enumerate(dims))


class TensorRTRunner(Runner):
    """A deserialized TensorRT engine on CUDA device ``device``.

    Example:
        >>> TensorRTRunner("model.plan").describe()["version"]        # doctest: +SKIP
        '10.3.0'
    """

    runtime = "tensorrt"

    def __init__(self, path: str | os.PathLike[str], device: int = 0, cuda_graph: bool = False):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"engine file not found: {self.path}", hint="check the path")
        data = self.path.read_bytes()
        self.manifest = verify_engine(self.path, data=data)  # exactly these bytes, before anything else
        trt = import_tensorrt("running TensorRT engines")
        import torch

        if not torch.cuda.is_available():
            raise EdgecError("running a TensorRT engine needs a CUDA GPU, and torch sees none",
                             hint="run it on the GPU it was built for")
        self._torch, self._trt = torch, trt
        self.device = torch.device("cuda", device)
        major, minor = torch.cuda.get_device_capability(self.device)
        check_target(self.path, self.manifest, trt.__version__,
                     (torch.cuda.get_device_name(self.device), f"{major}.{minor}"))
        with torch.cuda.device(self.device):
            self._runtime, self.engine = deserialize_engine(trt, data, self.manifest, self.path)
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise EdgecError(f"TensorRT could not create an execution context for {self.path.name}",
                                 hint="see TensorRT's message above (often: out of GPU memory)")
        self.cuda_graph = cuda_graph
        self._io_setup(trt)
        self._buffers: dict[tuple, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._graphs: dict[tuple, Any] = {}
        self._active: tuple | None = None

    def _io_setup(self, trt: Any) -> None:
        engine = self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        shapes = {n: _spec_shape(engine.get_tensor_shape(n)) for n in names}
        self._profiles = {n: [tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(n, 0)]
                          for n in names if is_input[n] and any(not isinstance(d, int) for d in shapes[n])}
        self.inputs = [TensorSpec(n, shapes[n], self._dtypes[n].name) for n in names if is_input[n]]
        self.outputs = [TensorSpec(n, shapes[n], self._dtypes[n].name) for n in names if not is_input[n]]
        maxima = [p[2][0] for p in self._profiles.values()]
        self.max_batch: int | None = min(maxima) if maxima else None
        batches = {(p[0][0], p[2][0]) for p in self._profiles.values()}  # (min, max) batch per dynamic input
        lo_hi = next(iter(batches)) if len(batches) == 1 else (None, None)
        self.static_batch: int | None = lo_hi[0] if lo_hi[0] == lo_hi[1] else None  # DLA: min = opt = max

    def _torch_dtype(self, name: str) -> Any:
        return self._torch.from_numpy(np.empty(0, self._dtypes[name])).dtype

    def _bind(self, key: tuple) -> tuple[dict[str, Any], dict[str, Any]]:
        """Shapes and addresses of one input-shape key; buffers allocated on first use."""
        torch, ctx = self._torch, self.context
        if key not in self._buffers:
            ins = {}
            for name, shape in key:
                check_profile(name, shape, self._profiles.get(name))
                if not ctx.set_input_shape(name, shape):
                    raise ModelError(f"TensorRT refused shape {shape} for input '{name}'",
                                     hint="expected " + ", ".join(f"{s.name}{list(s.shape)}" for s in self.inputs))
                ins[name] = torch.empty(shape, dtype=self._torch_dtype(name), device=self.device)
            outs = {}
            for spec in self.outputs:
                shape = tuple(int(d) for d in ctx.get_tensor_shape(spec.name))
                if any(d < 0 for d in shape):
                    raise ModelError(f"output '{spec.name}' has a data-dependent shape {shape}",
                                     hint="edgec's TensorRT runner needs output shapes known from the inputs")
                outs[spec.name] = torch.empty(shape, dtype=self._torch_dtype(spec.name), device=self.device)
            self._buffers[key] = (ins, outs)
            self._active = None
        if self._active != key:
            ins, outs = self._buffers[key]
            for name, shape in key:
                if not ctx.set_input_shape(name, shape):
                    raise ModelError(f"TensorRT refused shape {shape} for input '{name}'",
                                     hint="see TensorRT's message above")
            for name, t in {**ins, **outs}.items():
                if not ctx.set_tensor_address(name, t.data_ptr()):
                    raise EdgecError(f"TensorRT refused the buffer address for tensor '{name}'",
                                     hint="see TensorRT's message above (the address must be on this GPU "
                                          "and aligned)")
            self._active = key
        return self._buffers[key]

    def _execute(self) -> None:
        stream = self._torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EdgecError(f"TensorRT failed to run {self.path.name} (execute_async_v3 returned False)",
                             hint="see TensorRT's message above")

    def _graph(self, key: tuple) -> Any:
        """The CUDA graph of one input shape, captured after a warm run."""
        torch = self._torch
        if key not in self._graphs:
            self._bind(key)
            self._execute()  # TensorRT does deferred, shape-dependent work on the first enqueue
            torch.cuda.current_stream(self.device).synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):  # captures on a side stream, which is current inside
                self._execute()
            self._graphs[key] = graph
        return self._graphs[key]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs to the GPU, run the engine on torch's current stream, return outputs as numpy.

        An engine with a static batch B (a DLA engine: min = opt = max) runs any batch: in chunks of B,
        the last one zero-padded, with the padding rows cut from the outputs.

        Example:
            >>> runner.run({"input": x})["logits"].shape        # doctest: +SKIP
            (8, 10)
        """
        if self.context is None:
            raise EdgecError("this TensorRTRunner is closed", hint="open a new runner")
        ready = prepare_feeds(self.inputs, feeds)
        n = ready[self.inputs[0].name].shape[0] if self.inputs and ready[self.inputs[0].name].ndim else None
        if self.static_batch is None or n is None or n == self.static_batch:
            return self._run_ready(ready)
        parts = [(self._run_ready(chunk), valid) for chunk, valid in static_batch_chunks(ready, self.static_batch)]
        return {name: np.concatenate([out[name][:valid] for out, valid in parts]) for name in parts[0][0]}

    def _run_ready(self, ready: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = tuple((s.name, tuple(ready[s.name].shape)) for s in self.inputs)
        with self._torch.cuda.device(self.device):
            ins, outs = self._bind(key)
            for name, t in ins.items():
                t.copy_(self._torch.from_numpy(ready[name]))
            if self.cuda_graph:
                graph = self._graph(key)
                self._bind(key)
                graph.replay()
            else:
                self._execute()
            return {name: t.cpu().numpy() for name, t in outs.items()}  # .cpu() waits for the stream

    def describe(self) -> dict[str, Any]:
        """TensorRT version, GPU, CUDA graph use, profile, and the build's precision summary."""
        layers = {k: v for k, v in (self.manifest.get("layers") or {}).items() if k != "per_layer"}
        return {
            "runtime": self.runtime, "version": self._trt.__version__, "model": str(self.path),
            "device": str(self.device), "device_name": self._torch.cuda.get_device_name(self.device),
            "cuda_graph": self.cuda_graph, "engine_key": self.manifest.get("key"),
            "profile": {n: [list(s) for s in p] for n, p in self._profiles.items()},
            "static_batch": self.static_batch,
            "build": self.manifest.get("build"), "engine_layers": layers,
            "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
        }

    def close(self) -> None:
        """Free graphs, buffers, the context and the engine (in that order). Safe to call twice."""
        self._graphs.clear()
        self._buffers.clear()
        self.context = None
        self.engine = None
