"""PTQ inside `edgec build`: calibration on the training split, the two INT8 files, the deployed file
reproducing the reported accuracy from raw pixels, and a build whose INT8 misses its budget."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

import edgec.compress.calibrate as calibrate
from edgec.data.load import load_dataset
from edgec.data.splits import _round, stratified_pick
from edgec.data.synthetic import make_synthetic
from edgec.errors import VerificationFailed
from edgec.export.qdq import qdq_problems
from edgec.pipeline import build
from tests.pipeline_helpers import TINY, write_recipe


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ptq")
    seen: list[np.ndarray] = []
    original = calibrate.select_calibration_samples

    def spy(x, n, seed=0):
        seen.append(np.array(x))
        return original(x, n, seed=seed)

    mp = pytest.MonkeyPatch()
    mp.setattr(calibrate, "select_calibration_samples", spy)
    try:
        result = build(write_recipe(folder, bench={"enabled": False}), out=folder / "run", progress=False)
    finally:
        mp.undo()
    return folder / "run", result, seen


def test_calibration_samples_come_from_the_training_split(built):
    _, _, seen = built
    d = TINY["data"]
    ds = load_dataset(d["name"], None, synthetic=d["synthetic"], seed=TINY["seed"])
    assert seen and all(np.array_equal(x, ds.train.x) for x in seen)


def test_two_int8_files_with_flavours_in_deploy_json(built):
    run, result, _ = built
    q = result.artifacts["quantize"].metrics
    assert q["file"] == "model.int8.cpu.onnx" and q["tensorrt_file"] == "model.int8.onnx"
    assert {n: f["flavour"] for n, f in q["files"].items()} == {"model.int8.onnx": "s8s8",
                                                                 "model.int8.cpu.onnx": "u8s8_reduce_range"}
    deploy = json.loads((run / "deploy" / "deploy.json").read_text())
    assert deploy["recommended"] == "model.int8.cpu.onnx"
    assert deploy["int8"]["model.int8.onnx"]["runtime"] == "tensorrt"
    assert deploy["int8"]["model.int8.cpu.onnx"]["runtime"] == "onnxruntime-cpu"
    assert qdq_problems(run / "deploy" / "model.int8.onnx") == []  # the TensorRT file
    # the CPU file has asymmetric uint8 activations: ONNX Runtime's u8s8 kernels, not TensorRT's QDQ rules
    assert any("zero point" in p for p in qdq_problems(run / "deploy" / "model.int8.cpu.onnx"))
    sat = result.artifacts["verify"].metrics["avx2_saturation"]
    assert sat["model.int8.cpu.onnx"]["saturates"] is False  # 7-bit weights cannot saturate
    assert set(sat) == {"model.int8.onnx", "model.int8.cpu.onnx"}
    summary = result.report["summary"]["int8_files"]
    assert summary["model.int8.cpu.onnx"]["val_accuracy_steps"][0]["float_layers"] == []
    assert "model.int8.cpu.onnx" in (run / "report.md").read_text()


def test_deployed_int8_from_raw_pixels_reproduces_reported_accuracy(built):
    """Raw synthetic pixels (uint8) -> deploy.json's preprocessing -> the recommended file: the test accuracy
    in report.json, exactly."""
    run, result, _ = built
    deploy = json.loads((run / "deploy" / "deploy.json").read_text())
    d = TINY["data"]
    raw = make_synthetic(d["synthetic"])
    rng = np.random.default_rng(TINY["seed"])  # the split of edgec.data.splits.build_dataset, test first
    test_idx, _ = stratified_pick(raw.y, _round(0.2, len(raw.y)), rng)
    pixels, labels = raw.x[test_idx], raw.y[test_idx]
    assert pixels.dtype == np.uint8
    pre = deploy["preprocessing"]
    mean = np.asarray(pre["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(pre["std"], np.float32).reshape(1, -1, 1, 1)
    x = ((pixels.astype(np.float32) * np.float32(pre["scale"]) - mean) / std).astype(np.float32)
    sess = ort.InferenceSession(str(run / "deploy" / deploy["recommended"]), providers=["CPUExecutionProvider"])
    acc = float((sess.run(None, {deploy["input"]["name"]: x})[0].argmax(1) == labels).mean())
    assert acc == result.report["models"]["student_int8"]["accuracy"]


def test_int8_beyond_budget_fails_with_exit_1_and_publishes_nothing(tmp_path):
    # Percentile 90.01 clips a tenth of every activation's tails; no layer may stay in float and no drop
    # is allowed: the build must stop in the quantize stage.
    recipe = write_recipe(tmp_path, quantize={"calibration": {"method": "percentile", "percentile": 90.01, "samples": 64},
                                              "accuracy_budget": 0.0, "max_float_layers": 0},
                          bench={"enabled": False})
    with pytest.raises(VerificationFailed, match="accuracy_budget") as info:
        build(recipe, out=tmp_path / "run", progress=False)
    assert info.value.exit_code == 1 and "qat" in info.value.hint
    run = tmp_path / "run"
    assert not list(run.glob("quantize-*[!k]"))  # no finished-looking quantize stage
    assert not (run / "deploy").exists() and not (run / "report.json").exists()
