"""``TensorRTRunner``: what can be checked without TensorRT here (profile bounds, the manifest check that
comes before anything else); running real engines is in tests/engine/test_tensorrt_e2e.py (marked tensorrt)."""

from __future__ import annotations

import importlib.util

import pytest

from edgec.backends.tensorrt.manifest import write_engine_manifest
from edgec.errors import ArtifactError, MissingDependencyError, ModelError
from edgec.backends.tensorrt.runner import TensorRTRunner, check_profile

PROFILE = [(1, 1, 8, 8), (8, 1, 8, 8), (64, 1, 8, 8)]


def test_shapes_inside_the_profile_pass_and_outside_fail_clearly():
    for n in (1, 8, 64):
        check_profile("input", (n, 1, 8, 8), PROFILE)
    check_profile("input", (500, 3), None)  # a static input has no profile to check
    with pytest.raises(ModelError, match="outside the engine's profile") as err:
        check_profile("input", (65, 1, 8, 8), PROFILE)
    assert "engine.max_batch" in err.value.hint
    with pytest.raises(ModelError, match="outside"):
        check_profile("input", (4, 1, 8, 9), PROFILE)
    with pytest.raises(ModelError, match="outside"):
        check_profile("input", (4, 64), PROFILE)  # wrong rank


def _engine(tmp_path, data=b"PLAN"):
    plan = tmp_path / "model.plan"
    plan.write_bytes(data)
    write_engine_manifest(plan, {"tensorrt": "10.3.0", "gpu": {"name": "g", "compute_capability": "8.7"}})
    return plan


def test_tampered_engine_is_refused_before_tensorrt_is_touched(tmp_path):
    plan = _engine(tmp_path)
    plan.write_bytes(b"EVIL")
    with pytest.raises(ArtifactError, match="refusing to load .*sha256"):
        TensorRTRunner(plan)


def test_engine_without_manifest_is_refused(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"PLAN")
    with pytest.raises(ArtifactError, match="no engine.json"):
        TensorRTRunner(plan)
    with pytest.raises(ModelError, match="not found"):
        TensorRTRunner(tmp_path / "missing.plan")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_intact_engine_without_tensorrt_names_the_extra(tmp_path):
    with pytest.raises(MissingDependencyError) as err:
        TensorRTRunner(_engine(tmp_path))
    assert err.value.extra == "trt"


# --- issue 16: DLA core before deserializing, checked set_input_shape / set_tensor_address ----------------------

def test_a_dla_engine_gets_its_core_before_it_is_deserialized(tmp_path):
    from edgec.backends.tensorrt.runner import deserialize_engine
    from tests.engine.recording_tensorrt import RecordingTensorRT

    trt = RecordingTensorRT(10, dla_cores=2)
    deserialize_engine(trt, b"PLAN", {"dla": {"requested": 1, "available": 2, "core": 1, "used": True}}, tmp_path)
    assert trt.record["runtime_dla_core"] == 1
    old = RecordingTensorRT(10, dla_cores=2)  # a manifest written before the "core" key existed
    deserialize_engine(old, b"PLAN", {"dla": {"requested": 1, "available": 2, "used": True}}, tmp_path)
    assert old.record["runtime_dla_core"] == 1
    gpu = RecordingTensorRT(10, dla_cores=2)
    deserialize_engine(gpu, b"PLAN", {"dla": {"requested": 0, "available": 0, "used": False}}, tmp_path)
    assert gpu.record["runtime_dla_core"] == -1  # not touched


class _Context:
    """An execution context that refuses what the test tells it to (TensorRT returns False)."""

    def __init__(self, shape_ok=True, address_ok=True):
        self.shape_ok, self.address_ok, self.calls = shape_ok, address_ok, []

    def set_input_shape(self, name, shape):
        self.calls.append(("shape", name, tuple(shape)))
        return self.shape_ok

    def set_tensor_address(self, name, address):
        self.calls.append(("address", name))
        return self.address_ok

    def get_tensor_shape(self, name):
        return (2, 10)


def _bare_runner(context):
    """A runner around a fake context, on CPU torch buffers: only its binding logic runs."""
    import numpy as np
    import torch

    from edgec.backends.runner import TensorSpec

    runner = object.__new__(TensorRTRunner)
    runner._torch, runner.context, runner.device = torch, context, torch.device("cpu")
    runner._buffers, runner._active, runner._profiles = {}, None, {}
    runner._dtypes = {"input": np.dtype("float32"), "logits": np.dtype("float32")}
    runner.inputs = [TensorSpec("input", ("batch", 4), "float32")]
    runner.outputs = [TensorSpec("logits", ("batch", 10), "float32")]
    return runner


def test_a_refused_tensor_address_is_an_error():
    from edgec.errors import EdgecError

    with pytest.raises(EdgecError, match="refused the buffer address for tensor 'input'"):
        _bare_runner(_Context(address_ok=False))._bind((("input", (2, 4)),))


def test_a_refused_shape_on_rebinding_is_an_error():
    ctx = _Context()
    runner = _bare_runner(ctx)
    key = (("input", (2, 4)),)
    runner._bind(key)
    runner._active, ctx.shape_ok = None, False  # another shape ran in between; now TensorRT refuses
    with pytest.raises(ModelError, match=r"refused shape \(2, 4\)"):
        runner._bind(key)


def test_a_static_batch_engine_runs_any_batch_in_padded_chunks():
    """DLA engines have a static batch (min = opt = max): other batches run as zero-padded chunks."""
    import numpy as np

    from edgec.backends.tensorrt.runner import static_batch_chunks

    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    chunks = static_batch_chunks({"input": x}, 4)
    assert [valid for _, valid in chunks] == [4, 4, 2]
    assert all(chunk["input"].shape == (4, 3) for chunk, _ in chunks)
    last = chunks[-1][0]["input"]
    np.testing.assert_array_equal(last[:2], x[8:])
    np.testing.assert_array_equal(last[2:], 0)
    np.testing.assert_array_equal(np.concatenate([c["input"][:v] for c, v in chunks]), x)
    assert [v for _, v in static_batch_chunks({"input": x[:1]}, 8)] == [1]
