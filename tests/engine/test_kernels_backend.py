"""The ``kernels`` backend: conversion + runner on the CPU fallback here, end to end on a GPU (marked ``gpu``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgec.models import ModelSpec, load_model, save_model
from edgec.runtimes import TorchRunner, open_runner

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sparse_student(tmp_path_factory):
    """A small fitnet student with 90% of its conv weights zero (unstructured), saved as an edgec model."""
    torch.manual_seed(0)
    spec = ModelSpec("fitnet", {"widths": [4, 8, 8], "convs_per_stage": 1}, 1, 4, 8)
    model = spec.build().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1:
                m.weight[torch.rand_like(m.weight) < 0.9] = 0
    return save_model(model, spec, tmp_path_factory.mktemp("kernels") / "student.safetensors")


def test_kernels_runner_converts_and_matches_the_student_on_cpu(sparse_student):
    x = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype(np.float32)
    with open_runner(sparse_student, runtime="kernels", device="cpu", min_sparsity=0.8, bits=8) as runner:
        y = runner.infer(x)
        info = runner.describe()
    assert info["runtime"] == "kernels" and info["kernels"]["bits"] == 8
    swapped = {r["name"]: r["to"] for r in info["kernels"]["layers"] if r["action"] == "swapped"}
    assert "SparseConv2d" in swapped.values() and "LowBitLinear" in swapped.values()
    assert any(r["action"] == "kept" and "sparsity" in r["reason"] for r in info["kernels"]["layers"])  # dense conv1
    with TorchRunner(load_model(sparse_student)[0], input_shape=(1, 8, 8)) as ref:
        expected = ref.infer(x)
    # sparse conv is exact; the 8-bit linear layer adds a small quantization error
    np.testing.assert_allclose(y, expected, atol=0.05 * np.abs(expected).max())
    assert (y.argmax(1) == expected.argmax(1)).mean() >= 0.8


@pytest.mark.gpu
def test_kernels_backend_builds_verifies_and_benchmarks_end_to_end(tmp_path):
    from tests.kernels.conftest import gpu_skip_reason
    from tests.pipeline_helpers import write_recipe

    reason = gpu_skip_reason()
    if reason:
        pytest.skip(reason)
    from edgec.pipeline import build

    recipe = write_recipe(tmp_path, engine={"backend": "kernels", "min_sparsity": 0.0, "kernel_bits": 8},
                          verify={"max_int8_accuracy_drop": 1.0, "min_int8_top1_agreement": 0.0,
                                  "engine_atol": 1.0, "engine_rtol": 0.2, "min_engine_top1_agreement": 0.9,
                                  "max_engine_accuracy_drop": 0.1})
    result = build(recipe, out=tmp_path / "run", progress=False)
    engine = result.artifacts["engine"].metrics
    assert engine["backend"] == "kernels" and engine["swapped"]
    models = result.report["models"]
    assert models["student_kernels"]["runtime"] == "kernels" and models["student_kernels"]["latency_ms"]["p50"] > 0
    assert result.report["engine_verify"]["top1_agreement"] >= 0.9
