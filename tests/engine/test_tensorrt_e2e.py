"""Real TensorRT: the default recipe built, run, verified and benchmarked with ``engine.backend: tensorrt``.

Marked ``tensorrt``; skipped with the reason where TensorRT or a CUDA GPU is missing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgec.backends.tensorrt.manifest import verify_engine
from edgec.recipe import load_recipe

pytestmark = pytest.mark.tensorrt


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tests.engine.conftest import trt_skip_reason

    reason = trt_skip_reason()
    if reason:
        pytest.skip(reason)
    from edgec.pipeline import build

    recipe = load_recipe("digits")
    recipe = recipe.model_copy(update={"engine": recipe.engine.model_copy(update={"backend": "tensorrt"})})
    out = tmp_path_factory.mktemp("digits-trt")
    return out, build(recipe, out=out / "run", progress=False)


def test_default_recipe_builds_a_verified_int8_engine(built):
    _, result = built
    engine = result.artifacts["engine"]
    plan = engine.file("model.plan")
    manifest = verify_engine(plan)
    assert manifest["layers"]["detailed"] and manifest["layers"]["int8"] > 0
    report = result.report
    assert report["engine"]["backend"] == "tensorrt"
    trt_model, ref = report["models"]["student_tensorrt"], report["models"]["student_int8"]
    assert trt_model["runtime"] == "tensorrt" and trt_model["latency_ms"]["p50"] > 0
    assert abs(trt_model["accuracy"] - ref["accuracy"]) <= 0.01
    assert report["engine_verify"]["top1_agreement"] >= 0.98  # verify passed (else the build raised)
    results = json.loads((result.out / "results.json").read_text())
    assert results["models"]["student_tensorrt"]["runner"]["engine_layers"]["int8"] > 0


def test_runner_dynamic_batch_profile_and_cuda_graph(built):
    from edgec.errors import ModelError
    from edgec.runtimes import open_runner

    _, result = built
    plan = result.artifacts["engine"].file("model.plan")
    x = np.random.default_rng(0).normal(size=(64, 1, 8, 8)).astype(np.float32)
    with open_runner(plan) as plain, open_runner(plan, cuda_graph=True) as graphed:
        for n in (1, 7, 64):
            a, b = plain.infer(x[:n]), graphed.infer(x[:n])
            assert a.shape == (n, 10)
            np.testing.assert_array_equal(a, b)  # same kernels, replayed
        assert np.array_equal(graphed.infer(x[:7]), plain.infer(x[:7]))  # back to an earlier shape
        with pytest.raises(ModelError, match="outside the engine's profile"):
            plain.infer(np.zeros((65, 1, 8, 8), np.float32))


def test_tampered_engine_is_refused_before_deserialization(built, tmp_path):
    import shutil

    from edgec.errors import ArtifactError
    from edgec.runtimes import open_runner

    _, result = built
    folder = result.artifacts["engine"].path
    copy = tmp_path / "engine"
    shutil.copytree(folder, copy)
    data = bytearray((copy / "model.plan").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.plan").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match engine.json"):
        open_runner(copy / "model.plan")


def test_edgec_bench_runs_the_engine_on_the_gpu(built, tmp_path):
    from edgec.bench.run import BenchConfig, Timing, run_bench

    _, result = built
    plan = result.artifacts["engine"].file("model.plan")
    doc = run_bench(BenchConfig(plan, device="cuda", runtime="tensorrt", batches=(1, 8), shape=(1, 8, 8),
                                energy="off", timing=Timing(warmup_runs=5, min_runs=50, min_duration_s=0.2)))
    entry = doc["models"]["model.plan"]
    assert entry["runtime"] == "tensorrt" and entry["latency"]["1"]["device"]["p50"] > 0


@pytest.fixture(scope="module")
def trt_ready():
    from tests.engine.conftest import trt_skip_reason

    reason = trt_skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("which, fp16", [("fp32_onnx", False), ("fp32_onnx", True), ("qdq_onnx", False)])
def test_edgec_engine_builds_and_verifies_any_onnx(trt_ready, which, fp16, request, tmp_path):
    """`edgec engine` on a real GPU: float and QDQ ONNX, verified against ONNX Runtime, described, cached."""
    from edgec.backends.tensorrt.from_onnx import engine_from_onnx
    from edgec.backends.tensorrt.builder import BuildSettings

    onnx_path = request.getfixturevalue(which)
    settings = BuildSettings(fp16=fp16, min_batch=1, opt_batch=4, max_batch=16, timing_cache=str(tmp_path / "tc"))
    result = engine_from_onnx(onnx_path, tmp_path / "e", settings)
    assert result["verify"]["passed"], result["verify"]
    layers = result["manifest"]["layers"]
    assert layers["detailed"] and layers["counted"] > 0
    if which == "qdq_onnx":
        assert layers["int8"] > 0, layers["per_layer"]
    cache = result["manifest"]["timing_cache"]
    assert cache["saved"] and not cache["rejected"]
    again = engine_from_onnx(onnx_path, tmp_path / "e2", settings)  # the second build reuses the cache
    assert again["manifest"]["timing_cache"]["reused"] is True
