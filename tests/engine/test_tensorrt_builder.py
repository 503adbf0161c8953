"""The builder's version logic and settings, against ``RecordingTensorRT`` (a recording stand-in, not TensorRT).

What TensorRT itself does with these calls is checked by the ``tensorrt``-marked end-to-end test.
"""

from __future__ import annotations

import json

import pytest

from edgec.backends.tensorrt.manifest import timing_cache_file, verify_engine
from edgec.backends.tensorrt.builder import BuildSettings, build_engine, precision_plan
from edgec.errors import EdgecError, ModelError
from tests.engine.recording_tensorrt import ErrorCode, RecordingParserError, RecordingTensorRT
from tests.engine.trt11_fixtures import DLA_LAYERS

GPU = ("Recording GPU", "8.7")


def flags(trt) -> list[str]:
    """The builder flags set, by name (the stand-in records enum members, as TensorRT takes them)."""
    return [f.name for f in trt.record["flags"]]


def _build(onnx_path, tmp_path, trt, **settings):
    settings.setdefault("timing_cache", str(tmp_path / "cache"))
    return build_engine(onnx_path, tmp_path / "out", BuildSettings(**settings), trt=trt, gpu=GPU)


def test_trt10_weakly_typed_sets_int8_and_fp16_when_asked(qdq_onnx, tmp_path):
    trt = RecordingTensorRT(10)
    built = _build(qdq_onnx, tmp_path, trt)
    assert flags(trt) == ["INT8"] and trt.record["network_flags"] == 0
    trt16 = RecordingTensorRT(10)
    built16 = _build(qdq_onnx, tmp_path / "b", trt16, fp16=True)
    assert flags(trt16) == ["INT8", "FP16"]
    assert trt16.record["parsed"] == str(qdq_onnx)  # weakly typed: the QDQ file itself is parsed
    assert built.manifest["build"]["strongly_typed"] is False and built16.manifest["build"]["api"] == "10"


def test_trt10_strongly_typed_sets_no_precision_flags(qdq_onnx, tmp_path):
    trt = RecordingTensorRT(10)
    built = _build(qdq_onnx, tmp_path, trt, strongly_typed=True)
    assert flags(trt) == []
    assert trt.record["network_flags"] == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert built.manifest["build"]["strongly_typed"] is True


def test_trt11_is_strongly_typed_without_flags_and_fp16_goes_through_the_onnx(qdq_onnx, tmp_path):
    trt = RecordingTensorRT(11)
    assert not hasattr(trt.BuilderFlag, "INT8")
    built = _build(qdq_onnx, tmp_path, trt)
    # strongly typed without the flag: in 11 STRONGLY_TYPED (= 0) is deprecated and ignored (NvInfer.h)
    assert flags(trt) == [] and trt.record["network_flags"] == 0
    pytest.importorskip("onnxconverter_common", reason="engine.fp16 on TRT 11 needs onnxconverter-common (extra trt)")
    trt16 = RecordingTensorRT(11)
    built16 = _build(qdq_onnx, tmp_path / "b", trt16, fp16=True)
    assert flags(trt16) == []  # no precision flag even though fp16 was asked
    parsed = trt16.record["parsed"]
    assert parsed.endswith("model.int8.fp16.onnx") and built16.manifest["onnx"]["built_from"] == "model.int8.fp16.onnx"
    import onnx

    m = onnx.load(parsed)
    assert {t.data_type for t in m.graph.initializer} & {onnx.TensorProto.FLOAT16}
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # keep_io_types
    assert built.manifest["build"]["api"] == "11"


def test_precision_plan_for_a_float_model_sets_no_int8():
    assert precision_plan(RecordingTensorRT(10), BuildSettings(fp16=True), quantized=False)["flags"] == ["FP16"]
    assert precision_plan(RecordingTensorRT(10), BuildSettings(), quantized=False)["flags"] == []


def test_profile_workspace_level_verbosity(qdq_onnx, tmp_path):
    trt = RecordingTensorRT(10)
    built = _build(qdq_onnx, tmp_path, trt, min_batch=2, opt_batch=8, max_batch=32, workspace_mb=256,
                   optimization_level=5)
    assert trt.record["profiles"] == [{"input": ([2, 1, 8, 8], [8, 1, 8, 8], [32, 1, 8, 8])}]
    assert trt.record["pool_limits"] == {"WORKSPACE": 256 << 20}
    assert trt.record["config"]["builder_optimization_level"] == 5
    assert trt.record["config"]["profiling_verbosity"] == trt.ProfilingVerbosity.DETAILED
    assert built.manifest["profile"] == {"input": {"min": [2, 1, 8, 8], "opt": [8, 1, 8, 8], "max": [32, 1, 8, 8]}}


def test_timing_cache_is_loaded_and_saved_per_device_and_version(qdq_onnx, tmp_path):
    cache_dir = tmp_path / "cache"
    trt = RecordingTensorRT(10)
    _build(qdq_onnx, tmp_path / "1", trt, timing_cache=str(cache_dir))
    path = timing_cache_file(cache_dir, "10.3.0", GPU)
    assert trt.record["timing_cache_loaded"] == b"" and trt.record["timing_cache_ignore_mismatch"] is False
    saved = path.read_bytes()
    assert saved == f"TC|gpu0|{trt.build_id}".encode()  # saved after the build, with its timings
    again = RecordingTensorRT(10)
    _build(qdq_onnx, tmp_path / "2", again, timing_cache=str(cache_dir))
    assert again.record["timing_cache_loaded"] == saved  # the second build starts from it
    other = RecordingTensorRT(11)
    _build(qdq_onnx, tmp_path / "3", other, timing_cache=str(cache_dir))
    assert other.record["timing_cache_loaded"] == b""  # another TensorRT version: its own cache
    assert timing_cache_file(cache_dir, other.__version__, GPU).is_file()
    assert timing_cache_file(cache_dir, "10.3.0", ("Other GPU", "9.0")) != path
    off = RecordingTensorRT(10)
    _build(qdq_onnx, tmp_path / "4", off, timing_cache=False)
    assert off.record["timing_cache_loaded"] is None


def test_sparse_weights_only_for_2to4_models(qdq_onnx, sparse_qdq_onnx, tmp_path):
    dense = RecordingTensorRT(10)
    assert _build(qdq_onnx, tmp_path / "d", dense).manifest["sparse_weights"] == []
    assert "SPARSE_WEIGHTS" not in flags(dense)
    sparse = RecordingTensorRT(10)
    built = _build(sparse_qdq_onnx, tmp_path / "s", sparse)
    assert "SPARSE_WEIGHTS" in flags(sparse)
    assert len(built.manifest["sparse_weights"]) == 2  # conv2 and the linear layer; conv1 has C=1


def test_dla_only_when_there_are_dla_cores(qdq_onnx, tmp_path):
    none = RecordingTensorRT(10, dla_cores=0)
    built = _build(qdq_onnx, tmp_path / "n", none, dla_core=0)
    assert "default_device_type" not in none.record["config"] and "GPU_FALLBACK" not in flags(none)
    assert built.manifest["dla"] == {"requested": 0, "available": 0, "used": False}
    jetson = RecordingTensorRT(10, dla_cores=2, layer_info=DLA_LAYERS)
    built = _build(qdq_onnx, tmp_path / "j", jetson, dla_core=1)
    assert jetson.record["config"]["default_device_type"] == jetson.DeviceType.DLA
    assert jetson.record["config"]["DLA_core"] == 1
    assert "GPU_FALLBACK" in flags(jetson) and built.manifest["dla"]["used"] is True
    plain = RecordingTensorRT(10, dla_cores=2)
    _build(qdq_onnx, tmp_path / "p", plain)  # not asked for: GPU
    assert "default_device_type" not in plain.record["config"]


def test_parser_errors_name_the_node_and_quote_tensorrt(qdq_onnx, tmp_path):
    errors = [RecordingParserError("Unsupported attribute 'foo'", 3, "/conv/Conv", "Conv", ErrorCode.UNSUPPORTED_NODE),
              RecordingParserError("second problem", 7)]
    with pytest.raises(ModelError) as err:
        _build(qdq_onnx, tmp_path, RecordingTensorRT(10, parser_errors=errors))
    text = str(err.value)
    assert "node 3 '/conv/Conv' (Conv): Unsupported attribute 'foo' [UNSUPPORTED_NODE]" in text
    assert "node 7: second problem" in text and "(2 errors)" in text
    assert not (tmp_path / "out" / "model.plan").exists()


def test_failed_build_is_a_clear_error_with_tensorrts_message(qdq_onnx, tmp_path):
    with pytest.raises(EdgecError, match="could not build an engine") as err:
        _build(qdq_onnx, tmp_path, RecordingTensorRT(10, build_fails=True))
    assert "no tactic fits the workspace" in str(err.value)
    assert not (tmp_path / "out" / "model.plan").exists()


def test_builder_refuses_what_the_qdq_checker_rejects(qoperator_onnx, tmp_path):
    trt = RecordingTensorRT(10)
    with pytest.raises(ModelError, match="QLinearConv"):
        _build(qoperator_onnx, tmp_path, trt)
    assert trt.record["parsed"] is None  # refused before TensorRT saw it


def test_builder_refuses_asymmetric_zero_points(qdq_onnx, tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq_onnx))
    zp = next(t for t in model.graph.initializer if "zero_point" in t.name and not t.dims)
    zp.CopyFrom(numpy_helper.from_array(np.array(3, dtype=np.int8), zp.name))
    bad = tmp_path / "asym.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ModelError, match="asymmetric"):
        _build(bad, tmp_path, RecordingTensorRT(10))


def test_engine_and_manifest_are_written_and_verifiable(qdq_onnx, tmp_path):
    layer_info = {"Layers": [{"Name": "/0/Conv + /1/Relu", "LayerType": "CaskConvolution",
                              "Weights": {"Type": "Int8", "Count": 72}}], "Bindings": ["input", "logits"]}
    trt = RecordingTensorRT(10, layer_info=layer_info)
    built = _build(qdq_onnx, tmp_path, trt)
    assert built.plan.read_bytes() == trt.record["deserialized"]  # the inspector saw the built bytes
    manifest = json.loads(built.plan.with_name("engine.json").read_text())
    assert manifest == built.manifest and manifest["tensorrt"] == "10.3.0"
    assert manifest["gpu"] == {"name": GPU[0], "compute_capability": GPU[1]}
    assert manifest["layers"]["int8"] == 1 and manifest["layers"]["int8_fraction"] == 1.0
    assert verify_engine(built.plan, "10.3.0", GPU)["key"] == manifest["key"]


def test_settings_validate_batches():
    with pytest.raises(EdgecError, match="min <= opt <= max"):
        BuildSettings(min_batch=4, opt_batch=2)
