"""``edgec engine MODEL.onnx``: the library path on the strict TensorRT stand-in (ONNX Runtime really runs), and
the command line where TensorRT is absent (a real subprocess: exit 2 naming what to install)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from edgec.backends.tensorrt.from_onnx import compare_runners, describe, engine_from_onnx, random_feeds
from edgec.backends.tensorrt.builder import BuildSettings
from edgec.errors import ModelError, VerificationFailed
from edgec.runtimes import open_runner
from edgec.backends.runner import TensorSpec
from tests.engine.recording_tensorrt import RecordingTensorRT
from tests.engine.trt11_fixtures import TRT11

GPU = ("Recording GPU", "8.7")


class _Perturbed:
    """An 'engine' that is ONNX Runtime plus an offset: what a wrong engine looks like to the comparison."""

    def __init__(self, runner, offset):
        self.runner, self.offset, self.inputs = runner, offset, runner.inputs

    def run(self, feeds):
        return {k: v + self.offset for k, v in self.runner.run(feeds).items()}


@pytest.mark.parametrize("which", ["fp32_onnx", "qdq_onnx"])
def test_engine_from_any_onnx_builds_verifies_and_describes(which, request, tmp_path):
    onnx_path = request.getfixturevalue(which)
    trt = RecordingTensorRT(11, layer_info=TRT11)
    with open_runner(onnx_path, runtime="onnxruntime") as same:  # stands in for a correct engine
        result = engine_from_onnx(onnx_path, tmp_path / "e", BuildSettings(max_batch=8, opt_batch=4), trt=trt,
                                  gpu=GPU, cache_dir=tmp_path / "cache", engine_runner=same)
    assert result["plan"].read_bytes() == trt.record["deserialized"]
    assert result["manifest"]["profile"]["input"]["opt"] == [4, 1, 8, 8]
    v = json.loads((tmp_path / "e" / "verify.json").read_text())
    assert v["passed"] and v["batch"] == 4 and v["outputs"]["logits"]["max_abs_diff"] == 0.0
    text = "\n".join(describe(result))
    assert "2 INT8" in text and "verify vs ONNX Runtime: passed" in text


def test_a_disagreeing_engine_fails_verification(fp32_onnx, tmp_path):
    with open_runner(fp32_onnx, runtime="onnxruntime") as ort, pytest.raises(VerificationFailed) as err:
        engine_from_onnx(fp32_onnx, tmp_path / "e", trt=RecordingTensorRT(10), gpu=GPU, cache_dir=tmp_path / "c",
                         engine_runner=_Perturbed(ort, 1.0), atol=0.5, rtol=0.0)
    assert "disagrees with ONNX Runtime" in str(err.value) and err.value.exit_code == 1
    assert json.loads((tmp_path / "e" / "verify.json").read_text())["passed"] is False


def test_default_out_folder_and_missing_file(fp32_onnx, tmp_path):
    import shutil

    model = tmp_path / "net.onnx"
    shutil.copy(fp32_onnx, model)
    result = engine_from_onnx(model, trt=RecordingTensorRT(10), gpu=GPU, cache_dir=tmp_path / "c", verify=False)
    assert result["plan"] == tmp_path / "net-engine" / "model.plan" and result["verify"] is None
    with pytest.raises(ModelError, match="not found"):
        engine_from_onnx(tmp_path / "missing.onnx", trt=RecordingTensorRT(10), gpu=GPU)


def test_random_feeds_follow_the_specs():
    feeds = random_feeds([TensorSpec("x", ("batch", 3), "float32"), TensorSpec("ids", (None, 5), "int64")], 2)
    assert feeds["x"].shape == (2, 3) and feeds["x"].dtype == np.float32
    assert feeds["ids"].shape == (2, 5) and feeds["ids"].min() >= 0 and feeds["ids"].max() < 10
    assert np.array_equal(random_feeds([TensorSpec("x", ("batch", 3), "float32")], 2, seed=0)["x"], feeds["x"])
    with pytest.raises(ModelError, match="dynamic dimension 1"):
        random_feeds([TensorSpec("x", ("batch", "seq"), "float32")], 2)


def test_compare_runners_names_missing_outputs(fp32_onnx):
    class NoOutputs:
        def run(self, feeds):
            return {}

    with open_runner(fp32_onnx, runtime="onnxruntime") as ort, pytest.raises(VerificationFailed, match="no output"):
        compare_runners(ort, NoOutputs(), batch=2)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_cli_without_tensorrt_exits_2_saying_what_to_install(fp32_onnx, tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgec", "engine", str(fp32_onnx), "--out", str(tmp_path / "e")],
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "needs the 'tensorrt' package" in out and "pip install 'edgec[trt]'" in out
    assert "Traceback" not in out and not (tmp_path / "e").exists()
