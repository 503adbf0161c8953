"""``RecordingTensorRT``: a strict stand-in for the ``tensorrt`` module that records what the builder asks of it.

It is NOT TensorRT and builds nothing: it exists to unit-test edgec's own logic on machines without
TensorRT. It is as strict as the real bindings where edgec could get them wrong (checked against
NVIDIA/TensorRT ``python/src/infer/pyCore.cpp``, ``parsers/pyOnnx.cpp`` and ``include/NvInfer.h``
at release/10.3 and at 11.1, the "11" flavour):

* enums are ``IntEnum`` classes with TensorRT's real values, per version: ``NetworkDefinitionCreationFlag``
  is ``EXPLICIT_BATCH=0, STRONGLY_TYPED=1`` in 10.3 and ``STRONGLY_TYPED=0`` (deprecated, ignored) in
  11; ``BuilderFlag`` in 11 has no FP16, BF16, INT8, FP8, INT4, OBEY/PREFER_PRECISION_CONSTRAINTS,
  REJECT_EMPTY_ALGORITHMS (``DIRECT_IO`` is deprecated in 11 but still bound); a missing member is an
  ``AttributeError``, and a method given a plain string or int where an enum member is due raises
  ``TypeError``, as pybind11 does;
* objects refuse attributes the real classes do not have (pybind11 classes have no ``__dict__``):
  ``config.int8_calibrator = ...`` on 11 is an ``AttributeError``;
* calls return what the real API can return: ``add_optimization_profile`` -1 for an invalid
  profile, ``set_timing_cache`` False for a cache from another device (the config then holds none
  and ``get_timing_cache`` is None), ``build_serialized_network`` None;
* TensorRT keeps one logger per process: the first logger given to a Builder/Runtime/parser gets
  every message, a later different one gets none (TensorRT warns "The first one will be used");
* parser errors carry ``ErrorCode`` members and node -1 when not tied to a node.

The inspector's JSON is the hand-written fixture a test gives (``layer_info``).

Example:
    >>> trt = RecordingTensorRT(10)
    >>> build_engine(onnx_path, out, BuildSettings(fp16=True), trt=trt, gpu=("Recording GPU", "8.7"))
    >>> [f.name for f in trt.record["flags"]]
    ['INT8', 'FP16']
"""

from __future__ import annotations

import enum
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import onnx

FLAVOURS = {10: "10.3.0", 11: "11.1.0"}
_BUILD_IDS = itertools.count(1)

# include/NvInfer.h, enum class BuilderFlag, release/10.3 (WEIGHTLESS is a deprecated alias of STRIP_PLAN).
_BUILDER_FLAGS_10 = {
    "FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6,
    "SPARSE_WEIGHTS": 7, "SAFETY_SCOPE": 8, "OBEY_PRECISION_CONSTRAINTS": 9, "PREFER_PRECISION_CONSTRAINTS": 10,
    "DIRECT_IO": 11, "REJECT_EMPTY_ALGORITHMS": 12, "VERSION_COMPATIBLE": 13, "EXCLUDE_LEAN_RUNTIME": 14,
    "FP8": 15, "ERROR_ON_TIMING_CACHE_MISS": 16, "BF16": 17, "DISABLE_COMPILATION_CACHE": 18, "STRIP_PLAN": 19,
    "WEIGHTLESS": 19, "REFIT_IDENTICAL": 20, "WEIGHT_STREAMING": 21, "INT4": 22, "REFIT_INDIVIDUAL": 23}
# The same at release/11.0 and 11.1 (identical): precision flags gone, the rest renumbered.
_BUILDER_FLAGS_11 = {
    "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6, "SPARSE_WEIGHTS": 7,
    "SAFETY_SCOPE": 8, "DIRECT_IO": 11, "VERSION_COMPATIBLE": 12, "EXCLUDE_LEAN_RUNTIME": 13,
    "ERROR_ON_TIMING_CACHE_MISS": 15, "DISABLE_COMPILATION_CACHE": 17, "STRIP_PLAN": 18, "REFIT_IDENTICAL": 19,
    "WEIGHT_STREAMING": 20, "REFIT_INDIVIDUAL": 22, "STRICT_NANS": 23, "MONITOR_MEMORY": 24,
    "EDITABLE_TIMING_CACHE": 26, "DISTRIBUTIVE_INDEPENDENCE": 27}
_NETWORK_FLAGS = {10: {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1},
                  11: {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2}}
# IBuilderConfig properties bound in pyCore.cpp that edgec might set (int8_calibrator: 10 only).
_CONFIG_PROPERTIES = {"default_device_type", "DLA_core", "builder_optimization_level", "profiling_verbosity",
                      "avg_timing_iterations", "engine_capability", "flags", "max_aux_streams",
                      "hardware_compatibility_level", "profile_stream"}

ErrorCode = enum.IntEnum("ErrorCode", {  # include/NvOnnxParser.h
    "SUCCESS": 0, "INTERNAL_ERROR": 1, "MEM_ALLOC_FAILED": 2, "MODEL_DESERIALIZE_FAILED": 3, "INVALID_VALUE": 4,
    "INVALID_GRAPH": 5, "INVALID_NODE": 6, "UNSUPPORTED_GRAPH": 7, "UNSUPPORTED_NODE": 8,
    "UNSUPPORTED_NODE_ATTR": 9, "UNSUPPORTED_NODE_INPUT": 10, "UNSUPPORTED_NODE_DATATYPE": 11,
    "UNSUPPORTED_NODE_DYNAMIC": 12, "UNSUPPORTED_NODE_SHAPE": 13, "REFIT_FAILED": 14})
Severity = enum.IntEnum("Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4})


def _require(value: Any, kind: type, what: str) -> None:
    """pybind11 rejects an argument of the wrong type with TypeError ("incompatible function arguments")."""
    if not isinstance(value, kind):
        raise TypeError(f"{what}(): incompatible function arguments: expected {kind.__name__}, got {value!r}")


class _Strict:
    """Like a pybind11 object: no attributes other than the declared ones can be set."""

    _settable: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in self._settable:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


@dataclass
class RecordingParserError:
    """What ``parser.get_error(i)`` returns: TensorRT's ``ParserError`` methods (``node()`` is -1 when the
    error is not tied to a node, e.g. a model that does not deserialize)."""

    description: str
    node_index: int = -1
    name: str = ""
    operator: str = ""
    error_code: ErrorCode = ErrorCode.UNSUPPORTED_NODE

    def desc(self) -> str:
        return self.description

    def node(self) -> int:
        return self.node_index

    def node_name(self) -> str:
        return self.name

    def node_operator(self) -> str:
        return self.operator

    def code(self) -> ErrorCode:
        return self.error_code


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]


@dataclass
class _Network:
    flags: int
    inputs: list[_Tensor] = field(default_factory=list)

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, i: int) -> _Tensor:
        return self.inputs[i]


class _Profile(_Strict):
    def __init__(self) -> None:
        self._shapes: dict[str, tuple[list[int], list[int], list[int]]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - TensorRT's names
        self._shapes[input] = (list(min), list(opt), list(max))


class _TimingCache(_Strict):
    """Serialized as ``TC|<device>|<entry>,<entry>``; a cache from another device is a mismatch, and
    ``combine`` keeps entries this cache already has once (as TensorRT does)."""

    def __init__(self, device: str, entries: set[str]):
        self._device, self._entries = device, set(entries)

    @classmethod
    def parse(cls, data: bytes, device: str) -> _TimingCache:
        if not data:
            return cls(device, set())
        _, dev, entries = bytes(data).decode().split("|")
        return cls(dev, {e for e in entries.split(",") if e})

    def serialize(self) -> bytes:
        return f"TC|{self._device}|{','.join(sorted(self._entries))}".encode()

    def combine(self, input_cache: _TimingCache, ignore_mismatch: bool) -> bool:
        _require(input_cache, _TimingCache, "combine")
        if input_cache._device != self._device and not ignore_mismatch:
            return False
        self._entries |= input_cache._entries
        return True


class _Config(_Strict):
    def __init__(self, trt: RecordingTensorRT):
        self._trt, self._cache = trt, None
        self._settable = frozenset(_CONFIG_PROPERTIES | ({"int8_calibrator"} if trt.major == 10 else set()))

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_"):
            self._trt.record["config"][name] = value

    def set_flag(self, flag: Any) -> None:
        _require(flag, self._trt.BuilderFlag, "set_flag")
        self._trt.record["flags"].append(flag)

    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
        _require(pool, self._trt.MemoryPoolType, "set_memory_pool_limit")
        self._trt.record["pool_limits"][pool.name] = pool_size

    def add_optimization_profile(self, profile: _Profile) -> int:
        _require(profile, _Profile, "add_optimization_profile")
        valid = not self._trt.profile_invalid and all(
            all(a <= b <= c for a, b, c in zip(*shapes)) for shapes in profile._shapes.values())
        if not valid:
            self._trt.log(Severity.ERROR, "IBuilderConfig::addOptimizationProfile: invalid optimization profile")
            return -1
        self._trt.record["profiles"].append(profile._shapes)
        return len(self._trt.record["profiles"]) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> _TimingCache:
        if self._trt.record["timing_cache_loaded"] is None:
            self._trt.record["timing_cache_loaded"] = bytes(serialized_timing_cache)
        return _TimingCache.parse(serialized_timing_cache, self._trt.device)

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        _require(cache, _TimingCache, "set_timing_cache")
        self._trt.record["timing_cache_ignore_mismatch"] = ignore_mismatch
        if cache._device != self._trt.device and not ignore_mismatch:
            self._trt.log(Severity.ERROR, "timing cache was created on another device")
            return False
        self._cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache | None:
        return None if self._trt.timing_cache_none else self._cache


class RecordingTensorRT:
    """The stand-in module (10.3 or 11.1 flavour). ``record`` holds every call the builder made.

    ``parser_errors``: errors the parser reports; ``build_fails``: build_serialized_network -> None;
    ``dla_cores``: ``builder.num_DLA_cores``; ``layer_info``: the inspector's JSON (dict); ``device``:
    the tag timing caches carry (another device's cache is refused); ``profile_invalid``: every
    optimization profile is refused (-1); ``timing_cache_none``: ``get_timing_cache()`` is None;
    ``on_build``: called during the build (e.g. another process writing the timing cache meanwhile).
    """

    def __init__(self, major: int = 10, *, parser_errors: list[RecordingParserError] | None = None,
                 build_fails: bool = False, dla_cores: int = 0, layer_info: dict[str, Any] | None = None,
                 device: str = "gpu0", profile_invalid: bool = False, timing_cache_none: bool = False,
                 on_build: Any = None):
        self.major, self.__version__ = major, FLAVOURS[major]
        self.BuilderFlag = enum.IntEnum("BuilderFlag", _BUILDER_FLAGS_10 if major == 10 else _BUILDER_FLAGS_11)
        self.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", _NETWORK_FLAGS[major])
        self.MemoryPoolType = enum.IntEnum("MemoryPoolType", {
            "WORKSPACE": 0, "DLA_MANAGED_SRAM": 1, "DLA_LOCAL_DRAM": 2, "DLA_GLOBAL_DRAM": 3, "TACTIC_DRAM": 4,
            "TACTIC_SHARED_MEMORY": 5})
        self.ProfilingVerbosity = enum.IntEnum("ProfilingVerbosity", {"LAYER_NAMES_ONLY": 0, "NONE": 1, "DETAILED": 2})
        self.DeviceType = enum.IntEnum("DeviceType", {"GPU": 0, "DLA": 1})
        self.LayerInformationFormat = enum.IntEnum("LayerInformationFormat", {"ONELINE": 0, "JSON": 1})
        self.ErrorCode = ErrorCode
        self.parser_errors = parser_errors or []
        self.build_fails, self.dla_cores, self.device = build_fails, dla_cores, device
        self.profile_invalid, self.timing_cache_none = profile_invalid, timing_cache_none
        self.build_id, self.on_build = f"build{next(_BUILD_IDS)}", on_build
        self.layer_info = layer_info or {"Layers": [], "Bindings": []}
        self.record: dict[str, Any] = {"network_flags": None, "flags": [], "profiles": [], "pool_limits": {},
                                       "config": {}, "timing_cache_loaded": None, "parsed": None,
                                       "timing_cache_ignore_mismatch": None, "deserialized": None,
                                       "runtime_dla_core": None, "loggers": []}
        self._logger: Any = None
        self._define_classes()

    def log(self, severity: Severity, msg: str) -> None:
        """What TensorRT does with a message: the process's (first) logger gets it."""
        if self._logger is not None:
            self._logger.log(severity, msg)

    def _register(self, logger: Any) -> None:
        _require(logger, self.ILogger, "logger")
        self.record["loggers"].append(logger)
        if self._logger is None:
            self._logger = logger
        elif logger is not self._logger:
            self.log(Severity.WARNING, "The logger passed into createInferBuilder differs from one already "
                                       "provided. The first one will be used.")

    def _define_classes(self) -> None:
        trt = self

        class ILogger:
            Severity = globals()["Severity"]
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity  # export_values()

            def __init__(self) -> None:
                pass

            def log(self, severity: Any, msg: str) -> None:
                raise NotImplementedError

        class Logger(ILogger):
            def __init__(self, min_severity: Any = Severity.WARNING) -> None:
                self.min_severity = min_severity

            def log(self, severity: Any, msg: str) -> None:
                pass

        class Builder(_Strict):
            def __init__(self, logger: Any):
                trt._register(logger)

            @property
            def num_DLA_cores(self) -> int:  # noqa: N802 - TensorRT's name
                return trt.dla_cores

            def create_network(self, flags: int = 0) -> _Network:
                _require(flags, int, "create_network")
                if flags >> len(trt.NetworkDefinitionCreationFlag):
                    raise ValueError(f"invalid NetworkDefinitionCreationFlags {flags}")
                trt.record["network_flags"] = flags
                return _Network(flags)

            def create_builder_config(self) -> _Config:
                return _Config(trt)

            def create_optimization_profile(self) -> _Profile:
                return _Profile()

            def build_serialized_network(self, network: _Network, config: _Config) -> bytes | None:
                if trt.build_fails:
                    trt.log(Severity.ERROR, "recording stand-in: no tactic fits the workspace")
                    return None
                if trt.on_build is not None:
                    trt.on_build()
                if config._cache is not None:  # timings measured in this build
                    config._cache._entries.add(trt.build_id)
                return b"RECORDING-PLAN:" + json.dumps([f.name for f in trt.record["flags"]]).encode()

        class OnnxParser(_Strict):
            def __init__(self, network: _Network, logger: Any):
                trt._register(logger)
                self._network = network

            @property
            def num_errors(self) -> int:
                return len(trt.parser_errors)

            def get_error(self, index: int) -> RecordingParserError:
                return trt.parser_errors[index]

            def parse_from_file(self, model: str) -> bool:
                trt.record["parsed"] = model
                for err in trt.parser_errors:
                    trt.log(Severity.ERROR, f"ModelImporter.cpp: {err.desc()}")
                loaded = onnx.load(model)
                inits = {t.name for t in loaded.graph.initializer}
                for inp in loaded.graph.input:
                    if inp.name not in inits:
                        dims = tuple(d.dim_value if d.HasField("dim_value") else -1
                                     for d in inp.type.tensor_type.shape.dim)
                        self._network.inputs.append(_Tensor(inp.name, dims))
                return not trt.parser_errors

        class _Inspector(_Strict):
            def get_engine_information(self, format: Any) -> str:  # noqa: A002 - TensorRT's name
                _require(format, trt.LayerInformationFormat, "get_engine_information")
                assert format == trt.LayerInformationFormat.JSON
                return json.dumps(trt.layer_info)

        class _Engine(_Strict):
            def create_engine_inspector(self) -> _Inspector:
                return _Inspector()

        class Runtime(_Strict):
            _settable = frozenset({"DLA_core", "engine_host_code_allowed", "max_threads", "temporary_directory"})

            def __init__(self, logger: Any):
                trt._register(logger)
                self.DLA_core = -1

            @property
            def num_DLA_cores(self) -> int:  # noqa: N802
                return trt.dla_cores

            def deserialize_cuda_engine(self, serialized_engine: bytes) -> _Engine:
                trt.record["deserialized"] = bytes(serialized_engine)
                trt.record["runtime_dla_core"] = self.DLA_core
                return _Engine()

        self.ILogger, self.Logger, self.Builder = ILogger, Logger, Builder
        self.OnnxParser, self.Runtime = OnnxParser, Runtime
