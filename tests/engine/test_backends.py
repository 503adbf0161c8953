"""The backend registry: one object per backend, looked up by name, and what each one declares."""

from __future__ import annotations

import typing

import pytest

from edgec.backends import BACKENDS, ENGINE_CHOICES, RUNTIMES, SUFFIXES, get_backend, open_runner, resolve_backend
from edgec.backends.base import Backend
from edgec.errors import EdgecError, ModelError, RecipeError
from edgec.recipe import EngineSpec, parse_recipe


def test_four_backends_registered_with_distinct_files():
    assert set(BACKENDS.names()) == {"onnxruntime", "tensorrt", "kernels", "torch"}
    assert all(isinstance(get_backend(n), Backend) and get_backend(n).name == n for n in BACKENDS.names())
    assert RUNTIMES[0] == "auto" and set(RUNTIMES[1:]) == set(BACKENDS.names())
    assert SUFFIXES == {".onnx": "onnxruntime", ".safetensors": "torch", ".plan": "tensorrt", ".engine": "tensorrt"}


def test_the_recipe_lists_exactly_the_engine_backends():
    literal = typing.get_args(EngineSpec.model_fields["backend"].annotation)
    assert set(literal) == set(ENGINE_CHOICES) and "torch" not in literal


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ModelError, match="unknown runtime 'tensorrtt'; did you mean 'tensorrt'"):
        get_backend("tensorrtt")
    with pytest.raises(EdgecError, match="unknown engine backend 'torch'"):
        resolve_backend("torch")  # runs models, builds no engine


def test_text_runs_on_onnxruntime_only():
    assert resolve_backend("auto", task="text") == "onnxruntime"
    with pytest.raises(RecipeError, match=r"tensorrt cannot run the text student \(LSTM\)") as err:
        resolve_backend("tensorrt", task="text", reason="LSTM")
    assert "onnxruntime" in err.value.hint


def test_tensorrt_refuses_a_bench_batch_outside_its_profile():
    r = parse_recipe({"edgec": 1, "bench": {"batch_size": 128}, "engine": {"max_batch": 128}})
    assert get_backend("tensorrt").recipe_problem(r) is None
    r = r.model_copy(update={"engine": r.engine.model_copy(update={"max_batch": 64})})
    assert "engine.max_batch 64" in get_backend("tensorrt").recipe_problem(r)
    assert get_backend("onnxruntime").recipe_problem(r) is None


def test_options_and_deployed_files_come_from_the_backend():
    spec = EngineSpec(cuda_graph=True, min_sparsity=0.7, kernel_bits=4, intra_op_threads=3)
    assert get_backend("tensorrt").runner_options(spec) == {"cuda_graph": True}
    assert get_backend("kernels").runner_options(spec) == {"min_sparsity": 0.7, "bits": 4}
    assert get_backend("onnxruntime").build_options(spec) == {"intra_op_threads": 3}
    assert get_backend("torch").thread_options(2) == {"threads": 2} and get_backend("tensorrt").thread_options(2) == {}

    class Quantized:
        stage, metrics = "quantize", {"file": "model.int8.cpu.onnx", "tensorrt_file": "model.int8.onnx"}

    assert get_backend("onnxruntime").deployed_onnx(Quantized()) == "model.int8.cpu.onnx"
    assert get_backend("tensorrt").deployed_onnx(Quantized()) == "model.int8.onnx"  # PTQ: the S8S8 file


def test_report_lines_say_what_was_built():
    trt = get_backend("tensorrt").report_lines({"tensorrt": "10.3.0", "gpu": {"name": "Orin"}, "build": {},
                                               "layers": {"detailed": True, "int8": 8, "fp16": 1, "fp32": 1,
                                                          "int8_fraction": 0.8, "fallback_count": 0}})
    assert trt == ["- TensorRT 10.3.0 engine for Orin (weakly typed): 8 INT8 / 1 FP16 / 1 FP32 layers (80% INT8), "
                   "0 fell back from INT8"]
    assert get_backend("kernels").report_lines({"swapped": ["fc"]}) == ["- edgec CUDA kernels: 1 layers swapped (fc)"]
    assert get_backend("onnxruntime").report_lines({}) == []


def test_a_backend_opens_only_its_files(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(ModelError, match="runtime 'kernels' cannot run .onnx files; they run with 'onnxruntime'"):
        open_runner(onnx, runtime="kernels")
    st = tmp_path / "m.safetensors"
    st.write_bytes(b"x")
    with pytest.raises(ModelError, match="export the model to ONNX first"):
        open_runner(st, runtime="onnxruntime")


def test_bench_options_per_backend():
    assert get_backend("onnxruntime").bench_options("cpu", 2) == {"providers": ["cpu"], "intra_op_threads": 2}
    assert get_backend("onnxruntime").bench_options("cuda", None)["providers"] == ["cuda", "cpu"]
    assert get_backend("torch").bench_options("jetson", 1) == {"device": "cuda", "threads": 1}
    for name, words in (("tensorrt", "TensorRT engines"), ("kernels", "edgec CUDA kernels")):
        with pytest.raises(EdgecError, match=f"{words} run on a CUDA GPU, not with --device cpu"):
            get_backend(name).bench_options("cpu", None)
        assert get_backend(name).bench_options("cuda", 4) == {}
