"""Issue 16's audit of the builder against the real bindings, on the strict ``RecordingTensorRT`` stand-in:
timing cache results, DLA, one process-wide logger, checked return values, parser errors without a node."""

from __future__ import annotations

import pytest

from edgec.backends.tensorrt.manifest import timing_cache_file
from edgec.backends.tensorrt.builder import BuildSettings, build_engine
from edgec.errors import EdgecError, ModelError
from tests.engine.recording_tensorrt import ErrorCode, RecordingParserError, RecordingTensorRT
from tests.engine.trt11_fixtures import DLA_LAYERS, GPU_ONLY_LAYERS

GPU = ("Recording GPU", "8.7")


def _build(onnx_path, tmp_path, trt, **settings):
    settings.setdefault("timing_cache", str(tmp_path / "cache"))
    return build_engine(onnx_path, tmp_path / "out", BuildSettings(**settings), trt=trt, gpu=GPU)


def _cache(tmp_path, trt):
    return timing_cache_file(tmp_path / "cache", trt.__version__, GPU)


# --- 1. timing cache ------------------------------------------------------------------------------------------

def test_a_timing_cache_from_another_device_is_reported_and_replaced(qdq_onnx, tmp_path, capsys):
    first = RecordingTensorRT(10, device="other-board")
    _build(qdq_onnx, tmp_path / "a", first, timing_cache=str(tmp_path / "cache"))
    here = RecordingTensorRT(10, device="this-board")
    built = _build(qdq_onnx, tmp_path / "b", here, timing_cache=str(tmp_path / "cache"))
    status = built.manifest["timing_cache"]
    assert status["rejected"] is True and status["reused"] is False and status["saved"] is True
    assert "refused the timing cache" in capsys.readouterr().err
    # replaced by this device's cache (not merged with the foreign one)
    assert _cache(tmp_path, here).read_bytes() == f"TC|this-board|{here.build_id}".encode()


def test_a_reused_timing_cache_is_recorded_as_reused(qdq_onnx, tmp_path):
    cache = str(tmp_path / "cache")
    _build(qdq_onnx, tmp_path / "a", RecordingTensorRT(10), timing_cache=cache)
    built = _build(qdq_onnx, tmp_path / "b", RecordingTensorRT(10), timing_cache=cache)
    assert built.manifest["timing_cache"]["reused"] is True and built.manifest["timing_cache"]["rejected"] is False


def test_no_timing_cache_from_tensorrt_is_not_a_crash(qdq_onnx, tmp_path, capsys):
    built = _build(qdq_onnx, tmp_path, RecordingTensorRT(10, timing_cache_none=True))
    assert built.manifest["timing_cache"]["saved"] is False and built.plan.is_file()
    assert "kept no timing cache" in capsys.readouterr().err


def test_timings_another_build_saved_meanwhile_are_merged_not_lost(qdq_onnx, tmp_path):
    trt = RecordingTensorRT(10)
    path = _cache(tmp_path, trt)

    def other_process_saves():  # e.g. a second `edgec build` on the same machine, finishing first
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"TC|gpu0|other-build")

    trt.on_build = other_process_saves
    _build(qdq_onnx, tmp_path, trt)
    assert path.read_bytes() == f"TC|gpu0|{','.join(sorted([trt.build_id, 'other-build']))}".encode()
    assert path.with_name(path.name + ".lock").exists()  # written under the lock


# --- 2. DLA: static profile, FP16, used only when layers run there --------------------------------------------

def test_dla_build_is_fp16_with_a_static_profile(qdq_onnx, fp32_onnx, tmp_path):
    trt = RecordingTensorRT(10, dla_cores=2, layer_info=DLA_LAYERS)
    built = _build(fp32_onnx, tmp_path / "f", trt, dla_core=0, min_batch=1, opt_batch=4, max_batch=64)
    assert sorted(f.name for f in trt.record["flags"]) == ["FP16", "GPU_FALLBACK"]  # FP16 although not asked
    assert trt.record["profiles"] == [{"input": ([4, 1, 8, 8], [4, 1, 8, 8], [4, 1, 8, 8])}]
    assert built.manifest["profile"]["input"]["min"] == built.manifest["profile"]["input"]["max"] == [4, 1, 8, 8]
    assert built.manifest["dla"]["static_batch"] == 4
    q = RecordingTensorRT(10, dla_cores=2, layer_info=DLA_LAYERS)
    _build(qdq_onnx, tmp_path / "q", q, dla_core=0)
    assert {f.name for f in q.record["flags"]} >= {"INT8", "FP16", "GPU_FALLBACK"}


def test_dla_on_a_strongly_typed_build_converts_the_onnx_to_fp16(qdq_onnx, tmp_path):
    pytest.importorskip("onnxconverter_common", reason="FP16 ONNX for strongly typed builds needs onnxconverter-common")
    trt = RecordingTensorRT(11, dla_cores=1, layer_info=DLA_LAYERS)
    built = _build(qdq_onnx, tmp_path, trt, dla_core=0)
    assert built.manifest["build"]["fp16_onnx"] is True and trt.record["parsed"].endswith(".fp16.onnx")


def test_dla_used_reflects_the_layers_that_run_on_dla(qdq_onnx, tmp_path, capsys):
    on = _build(qdq_onnx, tmp_path / "on", RecordingTensorRT(10, dla_cores=2, layer_info=DLA_LAYERS), dla_core=1)
    assert on.manifest["dla"]["used"] is True and on.manifest["dla"]["layers_on_dla"] == 1
    off = _build(qdq_onnx, tmp_path / "off", RecordingTensorRT(10, dla_cores=2, layer_info=GPU_ONLY_LAYERS),
                 dla_core=1)
    assert off.manifest["dla"]["used"] is False and off.manifest["dla"]["layers_on_dla"] == 0
    assert "no layer runs on DLA" in capsys.readouterr().err


def test_the_runtime_names_the_dla_core_before_deserializing(qdq_onnx, tmp_path):
    trt = RecordingTensorRT(10, dla_cores=2, layer_info=DLA_LAYERS)
    _build(qdq_onnx, tmp_path, trt, dla_core=1)
    assert trt.record["runtime_dla_core"] == 1
    gpu = RecordingTensorRT(10, dla_cores=2)
    _build(qdq_onnx, tmp_path / "g", gpu)
    assert gpu.record["runtime_dla_core"] == -1  # untouched for a GPU engine


# --- 5. one logger per process ---------------------------------------------------------------------------------

def test_failures_quote_tensorrt_even_when_doctor_made_a_builder_first(qdq_onnx, tmp_path):
    from edgec.doctor import tensorrt_dla_cores

    trt = RecordingTensorRT(10, build_fails=True, dla_cores=2)
    assert tensorrt_dla_cores(trt) == 2  # `edgec doctor` in the same process gave TensorRT its logger first
    with pytest.raises(EdgecError, match="could not build an engine") as err:
        _build(qdq_onnx, tmp_path, trt)
    assert "no tactic fits the workspace" in str(err.value)


def test_every_build_uses_the_same_logger(qdq_onnx, tmp_path):
    trt = RecordingTensorRT(10)
    _build(qdq_onnx, tmp_path / "1", trt)
    _build(qdq_onnx, tmp_path / "2", trt)
    assert len({id(logger) for logger in trt.record["loggers"]}) == 1


def test_an_old_failure_is_not_quoted_for_a_new_one(qdq_onnx, tmp_path):
    trt = RecordingTensorRT(10, build_fails=True)
    with pytest.raises(EdgecError):
        _build(qdq_onnx, tmp_path / "1", trt)
    trt.build_fails, trt.profile_invalid = False, True
    with pytest.raises(EdgecError) as err:
        _build(qdq_onnx, tmp_path / "2", trt)
    assert "no tactic fits" not in str(err.value)


# --- 6. return values and parser errors -------------------------------------------------------------------------

def test_an_invalid_optimization_profile_is_an_error(qdq_onnx, tmp_path):
    trt = RecordingTensorRT(10, profile_invalid=True)
    with pytest.raises(EdgecError, match="refused the optimization profile") as err:
        _build(qdq_onnx, tmp_path, trt)
    assert "invalid optimization profile" in str(err.value)  # TensorRT's own message
    assert not (tmp_path / "out" / "model.plan").exists()


def test_a_parser_error_without_a_node_says_so(qdq_onnx, tmp_path):
    errors = [RecordingParserError("Failed to parse ONNX model from file", -1,
                                   error_code=ErrorCode.MODEL_DESERIALIZE_FAILED)]
    with pytest.raises(ModelError) as err:
        _build(qdq_onnx, tmp_path, RecordingTensorRT(11, parser_errors=errors))
    text = str(err.value)
    assert "no node: Failed to parse ONNX model from file [MODEL_DESERIALIZE_FAILED]" in text
    assert "node -1" not in text
