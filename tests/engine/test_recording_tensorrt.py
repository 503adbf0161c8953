"""The stand-in is as strict as the real bindings (values from NVIDIA/TensorRT include/NvInfer.h, NvOnnxParser.h
and python/src at release/10.3 and 11.1), so a builder test cannot pass on an API mistake TensorRT would reject."""

from __future__ import annotations

import pytest

from tests.engine.recording_tensorrt import ErrorCode, RecordingTensorRT

REMOVED_IN_11 = ("FP16", "BF16", "INT8", "FP8", "INT4", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS",
                 "REJECT_EMPTY_ALGORITHMS")


def test_real_enum_values_per_version():
    t10, t11 = RecordingTensorRT(10), RecordingTensorRT(11)
    assert int(t10.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) == 0
    assert int(t10.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 1
    assert int(t11.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 0
    assert not hasattr(t11.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    assert (int(t10.BuilderFlag.SPARSE_WEIGHTS), int(t11.BuilderFlag.SPARSE_WEIGHTS)) == (7, 7)
    assert (int(t10.BuilderFlag.VERSION_COMPATIBLE), int(t11.BuilderFlag.VERSION_COMPATIBLE)) == (13, 12)  # renumbered
    assert int(t11.BuilderFlag.DIRECT_IO) == 11  # deprecated in 11, still bound
    assert int(ErrorCode.UNSUPPORTED_NODE) == 8 and int(t10.DeviceType.DLA) == 1
    assert int(t10.ProfilingVerbosity.DETAILED) == 2 and int(t10.LayerInformationFormat.JSON) == 1


@pytest.mark.parametrize("flag", REMOVED_IN_11)
def test_precision_flags_are_gone_in_11(flag):
    assert hasattr(RecordingTensorRT(10).BuilderFlag, flag)
    with pytest.raises(AttributeError):
        getattr(RecordingTensorRT(11).BuilderFlag, flag)


def test_unknown_attributes_and_wrong_argument_types_are_refused():
    trt = RecordingTensorRT(11)
    config = trt.Builder(trt.Logger()).create_builder_config()
    with pytest.raises(AttributeError):
        config.int8_calibrator = object()  # removed in 11
    with pytest.raises(AttributeError):
        config.max_workspace_size = 1 << 20  # removed in 10
    with pytest.raises(TypeError):
        config.set_flag("SPARSE_WEIGHTS")  # a string is not a BuilderFlag
    with pytest.raises(TypeError):
        config.set_flag(RecordingTensorRT(10).BuilderFlag.SPARSE_WEIGHTS)  # another module's enum
    t10 = RecordingTensorRT(10)
    t10.Builder(t10.Logger()).create_builder_config().int8_calibrator = None  # still there in 10.3


def test_apis_return_what_the_real_ones_can():
    trt = RecordingTensorRT(10, device="a")
    builder = trt.Builder(trt.Logger())
    config = builder.create_builder_config()
    foreign = RecordingTensorRT(10, device="b")
    other_cache = foreign.Builder(foreign.Logger()).create_builder_config().create_timing_cache(b"TC|b|x")
    assert config.set_timing_cache(other_cache, ignore_mismatch=False) is False
    assert config.get_timing_cache() is None
    bad = builder.create_optimization_profile()
    bad.set_shape("input", (8, 1), (4, 1), (16, 1))
    assert config.add_optimization_profile(bad) == -1
