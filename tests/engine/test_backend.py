"""``resolve_backend`` on this machine, and a recipe whose backend cannot run failing before any training."""

from __future__ import annotations

import importlib.util
import time

import pytest

from edgec.backends import resolve_backend
from edgec.errors import EdgecError, MissingDependencyError
from edgec.pipeline import build
from edgec.stages.convert import resolve_backend as reexported
from tests.pipeline_helpers import write_recipe


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


NO_TRT = importlib.util.find_spec("tensorrt") is None


def test_onnxruntime_and_auto_without_tensorrt_or_gpu():
    assert resolve_backend("onnxruntime") == "onnxruntime"
    if NO_TRT or not _has_gpu():
        assert resolve_backend("auto") == "onnxruntime"
    assert reexported is resolve_backend
    with pytest.raises(EdgecError, match="unknown engine backend 'tensorrtt'"):
        resolve_backend("tensorrtt")


@pytest.mark.skipif(not NO_TRT, reason="tensorrt is installed here, so it cannot be reported missing")
def test_tensorrt_without_tensorrt_names_the_extra():
    with pytest.raises(MissingDependencyError) as err:
        resolve_backend("tensorrt")
    assert err.value.extra == "trt" and "pip install 'edgec[trt]'" in str(err.value)


@pytest.mark.skipif(_has_gpu(), reason="a CUDA GPU is visible here")
def test_kernels_without_a_gpu_is_a_clear_error():
    with pytest.raises(EdgecError, match="engine.backend: kernels needs a CUDA GPU") as err:
        resolve_backend("kernels")
    assert "onnxruntime" in err.value.hint


@pytest.mark.skipif(not NO_TRT and _has_gpu(), reason="this machine can build TensorRT engines")
@pytest.mark.parametrize("backend", ["tensorrt", "kernels"])
def test_a_build_that_cannot_run_its_backend_fails_before_training(tmp_path, backend):
    recipe = write_recipe(tmp_path, engine={"backend": backend})
    t0 = time.perf_counter()
    with pytest.raises(EdgecError):
        build(recipe, out=tmp_path / "run", progress=False)
    assert time.perf_counter() - t0 < 10
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith("teacher")]  # nothing trained
