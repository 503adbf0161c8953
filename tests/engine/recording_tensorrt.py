"""``RecordingTensorRT``: a stand-in for the ``tensorrt`` module that records what the builder asks of it.

It is NOT TensorRT and builds nothing: it exists only to unit-test edgec's own logic (which flags,
profiles, memory pools, timing-cache calls and network creation flags the builder uses for
TensorRT 10 and for TensorRT 11, and how it reports parser errors) on machines without TensorRT.
It mimics the documented Python API surface the builder touches; what it returns for the engine
inspector is the hand-written JSON a test gives it.

Version behaviour is what the builder feature-tests: ``major=10`` has ``BuilderFlag.INT8``/``FP16``;
``major=11`` has neither (removed in TensorRT 11).

Example:
    >>> trt = RecordingTensorRT(major=10)
    >>> build_engine(onnx_path, out, BuildSettings(fp16=True), trt=trt, gpu=("Recording GPU", "8.7"))
    >>> trt.record["flags"]
    ['INT8', 'FP16']
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import onnx


class _Names:
    """An enum stand-in whose members are their own names (so records read as strings)."""

    def __init__(self, *names: str, values: dict[str, int] | None = None):
        for i, name in enumerate(names):
            setattr(self, name, (values or {}).get(name, name))


@dataclass
class RecordingParserError:
    """What ``parser.get_error(i)`` returns: TensorRT's ``ParserError`` methods."""

    description: str
    node_index: int
    name: str = ""
    operator: str = ""
    error_code: str = "UNSUPPORTED_NODE"

    def desc(self) -> str:
        return self.description

    def node(self) -> int:
        return self.node_index

    def node_name(self) -> str:
        return self.name

    def node_operator(self) -> str:
        return self.operator

    def code(self) -> str:
        return self.error_code


@dataclass
class _Tensor:
    name: str
    shape: list[int]


@dataclass
class _Network:
    flags: int
    inputs: list[_Tensor] = field(default_factory=list)

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, i: int) -> _Tensor:
        return self.inputs[i]


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[list[int], list[int], list[int]]] = {}

    def set_shape(self, name: str, lo: list[int], opt: list[int], hi: list[int]) -> None:
        self.shapes[name] = (list(lo), list(opt), list(hi))


class _TimingCache:
    def __init__(self, data: bytes, record: dict[str, Any]):
        self.data, self.record = data, record

    def serialize(self) -> bytes:
        return b"timings:" + self.data + b"+1"


class _Config:
    def __init__(self, record: dict[str, Any]):
        self.record = record
        self._cache: _TimingCache | None = None

    def set_flag(self, flag: str) -> None:
        self.record["flags"].append(flag)

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        self.record["pool_limits"][pool] = size

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.record["profiles"].append(profile.shapes)
        return len(self.record["profiles"]) - 1

    def create_timing_cache(self, data: bytes) -> _TimingCache:
        self.record["timing_cache_loaded"] = bytes(data)
        return _TimingCache(bytes(data), self.record)

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        self.record["timing_cache_ignore_mismatch"] = ignore_mismatch
        self._cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache:
        assert self._cache is not None, "get_timing_cache before set_timing_cache"
        return self._cache

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in ("record", "_cache"):
            self.record["config"][name] = value
        object.__setattr__(self, name, value)


class RecordingTensorRT:
    """The stand-in module. ``record`` holds every call the builder made; see the module docstring.

    ``parser_errors``: errors the parser reports; ``build_fails``: build_serialized_network -> None;
    ``dla_cores``: ``builder.num_DLA_cores``; ``layer_info``: the inspector's JSON (dict).
    """

    def __init__(self, major: int = 10, *, parser_errors: list[RecordingParserError] | None = None,
                 build_fails: bool = False, dla_cores: int = 0, layer_info: dict[str, Any] | None = None):
        self.__version__ = {10: "10.3.0", 11: "11.4.0"}[major]
        precision = ("INT8", "FP16") if major == 10 else ()
        self.BuilderFlag = _Names(*precision, "SPARSE_WEIGHTS", "GPU_FALLBACK", "REFIT")
        self.NetworkDefinitionCreationFlag = _Names("STRONGLY_TYPED", values={"STRONGLY_TYPED": 1})
        self.MemoryPoolType = _Names("WORKSPACE", "DLA_MANAGED_SRAM")
        self.ProfilingVerbosity = _Names("LAYER_NAMES_ONLY", "DETAILED", "NONE")
        self.DeviceType = _Names("GPU", "DLA")
        self.LayerInformationFormat = _Names("ONELINE", "JSON")
        self.parser_errors = parser_errors or []
        self.build_fails = build_fails
        self.dla_cores = dla_cores
        self.layer_info = layer_info or {"Layers": [], "Bindings": []}
        self.record: dict[str, Any] = {"network_flags": None, "flags": [], "profiles": [], "pool_limits": {},
                                       "config": {}, "timing_cache_loaded": None, "parsed": None,
                                       "timing_cache_ignore_mismatch": None, "deserialized": None}
        trt = self

        class ILogger:
            Severity = _Names("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")

            def __init__(self) -> None:
                pass

        class Builder:
            def __init__(self, logger: Any):
                self.logger = logger
                self.num_DLA_cores = trt.dla_cores

            def create_network(self, flags: int) -> _Network:
                trt.record["network_flags"] = flags
                return _Network(flags)

            def create_builder_config(self) -> _Config:
                return _Config(trt.record)

            def create_optimization_profile(self) -> _Profile:
                return _Profile()

            def build_serialized_network(self, network: _Network, config: _Config) -> bytes | None:
                if trt.build_fails:
                    self.logger.log(ILogger.Severity.ERROR, "recording stand-in: no tactic fits the workspace")
                    return None
                return b"RECORDING-PLAN:" + json.dumps(trt.record["flags"]).encode()

        class OnnxParser:
            def __init__(self, network: _Network, logger: Any):
                self.network = network

            @property
            def num_errors(self) -> int:
                return len(trt.parser_errors)

            def get_error(self, i: int) -> RecordingParserError:
                return trt.parser_errors[i]

            def parse_from_file(self, path: str) -> bool:
                trt.record["parsed"] = path
                model = onnx.load(path)
                inits = {t.name for t in model.graph.initializer}
                for inp in model.graph.input:
                    if inp.name in inits:
                        continue
                    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim]
                    self.network.inputs.append(_Tensor(inp.name, dims))
                return not trt.parser_errors

        class _Inspector:
            def get_engine_information(self, fmt: str) -> str:
                assert fmt == "JSON"
                return json.dumps(trt.layer_info)

        class _Engine:
            def create_engine_inspector(self) -> _Inspector:
                return _Inspector()

        class Runtime:
            def __init__(self, logger: Any):
                pass

            def deserialize_cuda_engine(self, data: bytes) -> _Engine:
                trt.record["deserialized"] = bytes(data)
                return _Engine()

        self.ILogger, self.Builder, self.OnnxParser, self.Runtime = ILogger, Builder, OnnxParser, Runtime
