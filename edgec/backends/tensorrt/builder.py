"""Build a TensorRT engine (``model.plan`` + ``engine.json``) from a QDQ ONNX file, on TensorRT 10 and 11.

Two TensorRT majors are in use at once (DESIGN.md section 8): Jetson on JetPack 6 has **10.3**,
desktop ``pip install tensorrt`` is **11.x**. The version logic *feature-tests* the module, never
compares enum integers (they were renumbered in 11):

=====================  ===========================================  ======================================
TensorRT               network                                      precision
=====================  ===========================================  ======================================
11 (no BuilderFlag.    strongly typed (always; its deprecated       from the ONNX tensor types only; FP16
INT8)                  ``STRONGLY_TYPED`` flag is not passed)       for the float parts = an ONNX converted
                                                                    to mixed precision (``engine.fp16``)
10, default            weakly typed                                 ``BuilderFlag.INT8`` for a QDQ model
                                                                    (+ ``FP16`` with ``engine.fp16``)
10, ``strongly_typed``  strongly typed                               as for 11
=====================  ===========================================  ======================================

Every build also sets: an optimization profile for a dynamic batch (``min/opt/max_batch``), the
workspace limit, ``builder_optimization_level``, DETAILED profiling verbosity (for the inspector),
a timing cache per (GPU, TensorRT version) loaded before and merged back after the build under a
file lock (:mod:`.config`), ``SPARSE_WEIGHTS`` when some Conv/Gemm weight is 2:4 sparse, and
on a Jetson with DLA cores and ``engine.dla_core`` set, DLA with ``GPU_FALLBACK``: then FP16 is
forced (DLA runs only FP16/INT8) and the batch is static (``opt_batch``; DLA needs min = opt =
max), and the manifest's ``dla.used`` says whether the inspector found any layer on DLA.
TensorRT's messages go to one process-wide logger (:mod:`.logger`).

The QDQ checker (:func:`edgec.export.qdq.assert_tensorrt_qdq`) runs first and a model it rejects
is refused. Parser errors are reported node by node with TensorRT's own messages.

Example:
    >>> built = build_engine("runs/digits/quantize-ab12/model.int8.onnx", "out/", BuildSettings(max_batch=64))
    >>> built.manifest["layers"]["int8_fraction"]
    0.9
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgec.artifacts import sha256_file
from edgec.atomic import atomic_write_bytes
from edgec.backends.base import cuda_device
from edgec.backends.tensorrt.config import add_profile, dla_setup, load_timing_cache, save_timing_cache
from edgec.backends.tensorrt.logger import process_logger, tensorrt_said
from edgec.backends.tensorrt.manifest import PLAN, default_cache_dir, engine_key, timing_cache_file, write_engine_manifest
from edgec.backends.tensorrt.probe import import_tensorrt
from edgec.configs import TensorRTSettings
from edgec.console import say, warn
from edgec.errors import EdgecError, MissingDependencyError, ModelError

__all__ = ["BuildSettings", "EngineBuild", "precision_plan", "build_engine", "fp16_onnx"]


#: How to build: the TensorRT part of the recipe's ``engine`` section (one class, :mod:`edgec.configs`).
BuildSettings = TensorRTSettings


@dataclass
class EngineBuild:
    """A finished build: the plan file and its manifest (the content of ``engine.json``)."""

    plan: Path
    manifest: dict[str, Any]


def precision_plan(trt: Any, settings: BuildSettings, quantized: bool) -> dict[str, Any]:
    """The network typing and builder flags for this TensorRT and these settings.

    Returns ``{"tensorrt_major_features": "10"|"11", "strongly_typed", "flags", "fp16_onnx"}``.

    Example:
        >>> precision_plan(trt10, BuildSettings(fp16=True), quantized=True)["flags"]
        ['INT8', 'FP16']
    """
    has_precision_flags = hasattr(trt.BuilderFlag, "INT8")  # removed in TensorRT 11
    strongly = settings.strongly_typed or not has_precision_flags
    flags = [] if strongly else (["INT8"] if quantized else []) + (["FP16"] if settings.fp16 else [])
    return {"api": "10" if has_precision_flags else "11", "strongly_typed": strongly, "flags": flags,
            # a strongly typed network takes precision from the ONNX types only
            "fp16_onnx": bool(settings.fp16 and strongly)}


def fp16_onnx(src: Path, dst: Path) -> Path:
    """Write ``src`` converted to mixed precision (float tensors -> FP16, inputs/outputs kept FP32)
    with onnxconverter-common, for strongly typed builds, where precision comes from ONNX types only.

    A model below opset 19 is first converted to opset 19: from there QuantizeLinear/DequantizeLinear
    take FP16 scales, so Q/DQ pairs stay intact (blocking them instead leaves Cast chains that the
    converter cannot splice). DQ outputs then are FP16 and TensorRT fuses INT8 layers with FP16 I/O.
    """
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise MissingDependencyError("onnxconverter-common", "trt",
                                     "engine.fp16 on a strongly typed TensorRT build") from None
    import onnx
    from onnx import version_converter

    from edgec.onnx_files import load_onnx

    model = load_onnx(src)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 19:
        model = version_converter.convert_version(model, 19)
    converted = float16.convert_float_to_float16(model, keep_io_types=True)
    atomic_write_bytes(dst, converted.SerializeToString())
    onnx.checker.check_model(str(dst))
    return dst


def _parse(parser: Any, logger: Any, mark: int, source: Path) -> None:
    ok = parser.parse_from_file(str(source))
    if ok and not parser.num_errors:
        return
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = int(err.node())
        name = err.node_name() if hasattr(err, "node_name") else ""
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        where = ("no node" if node < 0 else f"node {node}") + (f" '{name}'" if name else "") + (f" ({op})" if op else "")
        lines.append(f"  - {where}: {err.desc()} [{getattr(err.code(), 'name', err.code())}]")
    detail = "\n".join(lines) or "  (the parser reported no error object)"
    raise ModelError(f"TensorRT's ONNX parser rejected {source.name} ({parser.num_errors} errors):\n{detail}"
                     + tensorrt_said(logger, mark),
                     hint="the named node uses an op or attribute this TensorRT does not support; re-export "
                          "with another opset/exporter, or run the model with engine.backend: onnxruntime")


def _timing_cache_path(s: BuildSettings, trt_version: str, gpu: tuple[str, str], cache_dir: Path | None) -> Path | None:
    if s.timing_cache is False:
        return None
    folder = cache_dir or (Path(s.timing_cache) if isinstance(s.timing_cache, str) else default_cache_dir())
    return timing_cache_file(folder, trt_version, gpu)


def build_engine(onnx_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], settings: BuildSettings, *,
                 trt: Any = None, gpu: tuple[str, str] | None = None, cache_dir: Path | None = None) -> EngineBuild:
    """Build ``out_dir/model.plan`` and ``out_dir/engine.json`` from ``onnx_path``.

    ``trt`` is the tensorrt module (imported when None; tests pass a recording stand-in), ``gpu``
    is ``(name, compute capability)`` (torch's device 0 when None).

    Example:
        >>> build_engine("model.int8.onnx", "engine/", BuildSettings(fp16=True)).plan
        PosixPath('engine/model.plan')
    """
    from edgec.backends.tensorrt.inspector import quantized_nodes, summarize_layers
    from edgec.backends.tensorrt.sparsity import sparse_24_layers
    from edgec.onnx_files import load_onnx
    from edgec.export.qdq import QOPERATOR_OPS, assert_tensorrt_qdq

    src, out = Path(onnx_path), Path(out_dir)
    model = load_onnx(src)
    ops = {n.op_type for n in model.graph.node}
    quantized = bool(ops & ({"QuantizeLinear", "DequantizeLinear"} | QOPERATOR_OPS))
    if quantized:
        assert_tensorrt_qdq(model)  # refuse what TensorRT would reject or mis-build
    trt = trt if trt is not None else import_tensorrt("building TensorRT engines")
    gpu = gpu or cuda_device()
    if gpu is None:
        raise EdgecError("building a TensorRT engine needs a CUDA GPU, and torch sees none",
                         hint="build on the target GPU (engines are tied to it)")
    logger = process_logger(trt)  # TensorRT keeps the first logger of the process: always the same one
    mark = logger.mark()
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    dla = dla_setup(trt, builder, config, settings.dla_core)
    on_dla = dla is not None and "core" in dla
    effective = settings
    if on_dla:  # DLA: FP16 (or INT8) only, static shapes only
        b = settings.opt_batch
        effective = settings.model_copy(update={"fp16": True, "min_batch": b, "opt_batch": b, "max_batch": b})
        dla["static_batch"] = b
        if not settings.fp16 or settings.min_batch != settings.max_batch:
            warn(f"engine.dla_core: DLA engines are FP16/INT8 with a static batch: building with FP16 and "
                 f"batch {b} (engine.opt_batch)")
    plan = precision_plan(trt, effective, quantized)
    source = fp16_onnx(src, out / f"{src.stem}.fp16.onnx") if plan["fp16_onnx"] else src
    sparse = sparse_24_layers(model)

    flags = 0  # TensorRT 11: every network is strongly typed; its STRONGLY_TYPED flag is deprecated and ignored
    if plan["strongly_typed"] and plan["api"] == "10" and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif plan["strongly_typed"] and plan["api"] == "10":
        raise EdgecError(f"engine.strongly_typed needs TensorRT >= 9.1 (this is {trt.__version__})",
                         hint="upgrade TensorRT or set engine.strongly_typed: false")
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    _parse(parser, logger, mark, source)

    for flag in plan["flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if sparse:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    profile = add_profile(builder, network, config, (effective.min_batch, effective.opt_batch, effective.max_batch),
                          logger, mark)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    config.builder_optimization_level = settings.optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the inspector needs per-layer detail
    cache_path = _timing_cache_path(settings, trt.__version__, gpu, cache_dir)
    cache = load_timing_cache(config, cache_path) if cache_path is not None else None

    say(f"  building a TensorRT {trt.__version__} engine for {gpu[0]} (sm {gpu[1]}): "
        f"{'strongly typed' if plan['strongly_typed'] else 'flags ' + ','.join(plan['flags'] or ['none'])}"
        + (f", DLA core {settings.dla_core}" if on_dla else ""))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgecError(f"TensorRT could not build an engine from {src.name}" + tensorrt_said(logger, mark),
                         hint="see TensorRT's messages above; a larger engine.workspace_mb or "
                              "engine.optimization_level: 3 may help")
    data = bytes(serialized)
    plan_path = atomic_write_bytes(out / PLAN, data)
    if cache is not None:
        cache["saved"] = save_timing_cache(config, cache)

    runtime = trt.Runtime(logger)  # kept in scope while the engine lives
    if on_dla:  # as trtexec does: the runtime must name the core before deserializing a DLA engine
        runtime.DLA_core = settings.dla_core
    engine = runtime.deserialize_cuda_engine(data)  # our own fresh bytes: safe to load
    if engine is None:
        raise EdgecError("TensorRT built an engine it cannot load back" + tensorrt_said(logger, mark),
                         hint="see TensorRT's messages above")
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    layers = summarize_layers(info, quantized_nodes(model))
    if on_dla:
        dla.update(layers_on_dla=layers.get("dla"), used=bool(layers.get("dla")))
        if not dla["used"]:
            warn(f"engine.dla_core: {settings.dla_core}: "
                 + ("no layer runs on DLA (all fell back to the GPU)" if layers.get("detailed")
                    else "the inspector gave no layer detail, so DLA use is unknown"))
    onnx_sha = sha256_file(src)
    manifest = write_engine_manifest(plan_path, {
        "key": engine_key(onnx_sha, trt.__version__, gpu, settings.to_dict()),
        "tensorrt": trt.__version__, "gpu": {"name": gpu[0], "compute_capability": gpu[1]},
        "onnx": {"file": src.name, "sha256": onnx_sha, "built_from": source.name},
        "build": {**settings.to_dict(), **plan}, "profile": profile, "sparse_weights": sparse,
        "dla": dla, "timing_cache": cache, "layers": layers})
    if layers.get("detailed"):
        say(f"  engine layers: {layers['int8']} INT8, {layers['fp16']} FP16, {layers['fp32']} FP32; "
            f"{layers['fallback_count']} fell back from INT8" + (f"; {layers['dla']} on DLA" if dla else ""))
    return EngineBuild(plan_path, manifest)
